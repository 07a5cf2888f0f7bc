"""Address management for bridge networks, as Docker's default IPAM driver does it. Pure: no I/O.

The daemon's use of it is dockyard.services.netkernel.Kernel: it plans a network's subnets with
`pick_subnet` and `Pool.create`, and keeps one `Pool` per network (and one per IPv6 subnet) in
memory for its addresses.

- Subnets. The default network `bridge` gets 172.17.0.0/16 (gateway 172.17.0.1); a user-defined
  network without `--subnet` gets the first of Docker's default local pools that overlaps no
  subnet in use: 172.17.0.0/16 ... 172.31.0.0/16, then 192.168.0.0/16 cut into /20s. "In use"
  is whatever the caller passes to `pick_subnet` (the Kernel: the other networks' subnets and
  the host's routes); an explicit `--subnet` is checked against the other networks only
  (Kernel.plan_subnet), as Docker does.
- Addresses. The gateway defaults to the subnet's first host. Containers get addresses from the
  ip-range (the whole subnet without one), never the subnet's network or broadcast address, the
  gateway or an aux address. Allocation is serial, like Docker's: the next free address after the
  last one handed out, wrapping round, so a released address is not reused at once.
- State. A pool lives in memory only; after a restart the addresses of running containers are
  given back with `Pool.reserve`.

IPv4 is complete; IPv6 works for explicit subnets (Docker has no default IPv6 pool either).

Errors: InvalidArgument for malformed or inconsistent input (bad CIDR, gateway outside the
subnet, `--ip` outside the subnet), AlreadyExists for an address that is taken, WrongState when
a pool has run out of addresses or no default pool is free.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Union

from dockyard.errors import AlreadyExists, InvalidArgument, WrongState

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

DEFAULT_BRIDGE_SUBNET = "172.17.0.0/16"
DEFAULT_BRIDGE_GATEWAY = "172.17.0.1"


def default_pools() -> Iterator[ipaddress.IPv4Network]:
    """Docker's default local address pools, in the order it tries them."""
    for second in range(17, 32):
        yield ipaddress.IPv4Network(f"172.{second}.0.0/16")
    yield from ipaddress.IPv4Network("192.168.0.0/16").subnets(new_prefix=20)


def parse_network(text: str, what: str = "subnet") -> Network:
    """A CIDR such as 10.1.0.0/16; host bits set (10.1.2.3/16) are cleared, as Docker does."""
    if "/" not in text:
        raise InvalidArgument(f"invalid {what} {text!r}: expected an address with a prefix length (CIDR)")
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise InvalidArgument(f"invalid {what} {text!r}: {exc}") from None


def parse_address(text: str, what: str = "address") -> Address:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: not an IP address") from None


def _overlapping(net: Network, others: Iterable[Network]) -> Network | None:
    for other in others:
        if other.version == net.version and net.overlaps(other):  # type: ignore[arg-type]
            return other
    return None


def pick_subnet(in_use: Iterable[str | Network] = ()) -> ipaddress.IPv4Network:
    """The first default pool overlapping nothing in `in_use` (CIDR strings or networks)."""
    used = [u if not isinstance(u, str) else parse_network(u, "subnet in use") for u in in_use]
    for pool in default_pools():
        if _overlapping(pool, used) is None:
            return pool
    raise WrongState("could not find an available, non-overlapping IPv4 address pool among the "
                     "defaults to assign to the network")


def mac_for(address: str) -> str:
    """The MAC Docker derives from a container's IPv4 address: 02:42 then the four bytes."""
    packed = ipaddress.IPv4Address(address).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in packed)


@dataclass
class Pool:
    """One subnet of one network and the addresses handed out from it."""

    subnet: Network
    gateway: Address
    ip_range: Network | None = None
    aux: dict[str, Address] = field(default_factory=dict)
    allocated: set[Address] = field(default_factory=set)
    last: Address | None = None   # the serial allocator's cursor

    @classmethod
    def create(cls, subnet: str, gateway: str = "", ip_range: str = "",
               aux_addresses: dict[str, str] | None = None) -> Pool:
        """Validate a subnet and its gateway, ip-range and aux addresses."""
        net = parse_network(subnet)
        if net.version == 4 and net.prefixlen > 30:
            raise InvalidArgument(f"subnet {net} is too small: at most /30 for IPv4")
        if net.version == 6 and net.prefixlen > 126:
            raise InvalidArgument(f"subnet {net} is too small: at most /126 for IPv6")
        if gateway:
            gw = parse_address(gateway, "gateway")
            if gw.version != net.version or gw not in net:  # type: ignore[operator]
                raise InvalidArgument(f"gateway {gw} is not in subnet {net}")
            if gw == net.network_address or (net.version == 4 and gw == net.broadcast_address):
                raise InvalidArgument(f"gateway {gw} is the network or broadcast address of {net}")
        else:
            gw = net.network_address + 1
        rng = None
        if ip_range:
            rng = parse_network(ip_range, "ip-range")
            if rng.version != net.version or not rng.subnet_of(net):  # type: ignore[arg-type]
                raise InvalidArgument(f"ip-range {rng} is not in subnet {net}")
        aux: dict[str, Address] = {}
        for name, text in (aux_addresses or {}).items():
            addr = parse_address(text, f"aux address {name}")
            if addr.version != net.version or addr not in net:  # type: ignore[operator]
                raise InvalidArgument(f"aux address {name}={addr} is not in subnet {net}")
            aux[name] = addr
        return cls(subnet=net, gateway=gw, ip_range=rng, aux=aux)

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    def _reserved(self, addr: Address) -> bool:
        net = self.subnet
        return (addr == net.network_address or (net.version == 4 and addr == net.broadcast_address)
                or addr == self.gateway or addr in self.aux.values())

    def _span(self) -> Network:
        return self.ip_range if self.ip_range is not None else self.subnet

    def contains(self, address: str) -> bool:
        addr = ipaddress.ip_address(address)
        return addr.version == self.subnet.version and addr in self.subnet  # type: ignore[operator]

    def allocate(self, requested: str = "") -> str:
        """A free address: `requested` (any address of the subnet that is not reserved, like
        Docker's `--ip`, which may lie outside the ip-range) or the next one in the range."""
        if requested:
            addr = parse_address(requested, "IP address")
            if addr.version != self.subnet.version or addr not in self.subnet:  # type: ignore[operator]
                raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {addr}")
            if self._reserved(addr) or addr in self.allocated:
                raise AlreadyExists(f"Address already in use: {addr}")
            self.allocated.add(addr)
            return str(addr)
        span = self._span()
        first, size = int(span.network_address), span.num_addresses
        start = 0
        if self.last is not None and self.last in span:  # type: ignore[operator]
            start = int(self.last) - first + 1
        taken_here = sum(1 for a in self.allocated if a in span)  # type: ignore[operator]
        if taken_here >= size:
            raise WrongState(f"no available IPv{self.subnet.version} addresses in {span}")
        for step in range(size):
            addr = ipaddress.ip_address(first + (start + step) % size)
            if not self._reserved(addr) and addr not in self.allocated:
                self.allocated.add(addr)
                self.last = addr
                return str(addr)
        raise WrongState(f"no available IPv{self.subnet.version} addresses in {span}")

    def reserve(self, address: str) -> None:
        """Mark an address as taken without the checks (an endpoint found again after a restart)."""
        addr = parse_address(address)
        if not self.contains(address):
            raise InvalidArgument(f"address {addr} is not in subnet {self.subnet}")
        self.allocated.add(addr)

    def release(self, address: str) -> None:
        """Give an address back; nothing when it was not taken."""
        self.allocated.discard(parse_address(address))
