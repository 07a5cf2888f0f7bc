"""Address management for bridge networks, as Docker's default IPAM driver does it. Pure: no I/O.

- Subnets. The default network `bridge` gets 172.17.0.0/16 (gateway 172.17.0.1); a user-defined
  network without `--subnet` gets the first of Docker's default local pools that overlaps no
  subnet in use: 172.17.0.0/16 ... 172.31.0.0/16, then 192.168.0.0/16 cut into /20s. "In use"
  means the other networks here plus whatever the caller passes (the host's routes); an explicit
  `--subnet` is checked against the other networks only, as Docker does.
- Addresses. The gateway defaults to the subnet's first host. Containers get addresses from the
  ip-range (the whole subnet without one), never the subnet's network or broadcast address, the
  gateway or an aux address. Allocation is serial, like Docker's: the next free address after the
  last one handed out, wrapping round, so a released address is not reused at once.
- State. `Ipam.to_dict()` is JSON-able and `Ipam.from_dict()` restores it after a restart.

IPv4 is complete; IPv6 works for explicit subnets (Docker has no default IPv6 pool either).

Errors: InvalidArgument for malformed or inconsistent input (bad CIDR, gateway outside the
subnet, `--ip` outside the subnet), AlreadyExists for an overlapping subnet or an address that is
taken, WrongState when a pool or a network has run out of addresses, NotFound for an unknown
network.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Union

from dockyard.errors import AlreadyExists, InvalidArgument, NotFound, WrongState

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

    @property
    def gateway_cidr(self) -> str:
        """The bridge's address: gateway/prefix."""
        return f"{self.gateway}/{self.subnet.prefixlen}"

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "subnet": str(self.subnet),
            "gateway": str(self.gateway),
            "ip_range": str(self.ip_range) if self.ip_range is not None else "",
            "aux": {k: str(v) for k, v in sorted(self.aux.items())},
            "allocated": [str(a) for a in sorted(self.allocated)],
            "last": str(self.last) if self.last is not None else "",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pool:
        pool = cls.create(data["subnet"], data.get("gateway", ""), data.get("ip_range", ""), data.get("aux") or {})
        for address in data.get("allocated", []):
            pool.reserve(address)
        if data.get("last"):
            pool.last = parse_address(data["last"])
        return pool


@dataclass
class NetworkAddresses:
    """The pools of one network: IPv4 and, optionally, IPv6."""

    v4: Pool
    v6: Pool | None = None

    def pools(self) -> list[Pool]:
        return [self.v4] + ([self.v6] if self.v6 is not None else [])

    def pool_for(self, address: str) -> Pool:
        for pool in self.pools():
            if pool.contains(address):
                return pool
        raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {address}")


class Ipam:
    """The subnets and addresses of every bridge network, by network id."""

    def __init__(self) -> None:
        self.networks: dict[str, NetworkAddresses] = {}

    def _subnets_in_use(self, exclude: str = "") -> list[Network]:
        return [p.subnet for nid, n in self.networks.items() if nid != exclude for p in n.pools()]

    def add_network(self, network_id: str, *, subnet: str = "", gateway: str = "", ip_range: str = "",
                    aux_addresses: dict[str, str] | None = None, subnet6: str = "", gateway6: str = "",
                    ip_range6: str = "", in_use: Iterable[str] = ()) -> NetworkAddresses:
        """Plan a network's subnets. Without `subnet`, the first free default pool that overlaps
        neither another network nor anything in `in_use` (the host's routes); with one, it must
        not overlap another network."""
        if network_id in self.networks:
            raise AlreadyExists(f"network {network_id} already has addresses")
        if subnet:
            v4 = Pool.create(subnet, gateway, ip_range, aux_addresses)
            if v4.subnet.version != 4:
                raise InvalidArgument(f"subnet {subnet} is not IPv4")
        else:
            if gateway or ip_range or aux_addresses:
                raise InvalidArgument("a gateway, ip-range or aux address needs a subnet")
            used: list[str | Network] = [*self._subnets_in_use(), *in_use]
            v4 = Pool.create(str(pick_subnet(used)))
        self._check_overlap(v4.subnet)
        v6 = None
        if subnet6:
            v6 = Pool.create(subnet6, gateway6, ip_range6)
            if v6.subnet.version != 6:
                raise InvalidArgument(f"subnet {subnet6} is not IPv6")
            self._check_overlap(v6.subnet)
        elif gateway6 or ip_range6:
            raise InvalidArgument("an IPv6 gateway or ip-range needs an IPv6 subnet")
        self.networks[network_id] = NetworkAddresses(v4, v6)
        return self.networks[network_id]

    def add_default_bridge(self, network_id: str = "bridge", in_use: Iterable[str] = ()) -> NetworkAddresses:
        """The default network: 172.17.0.0/16 (gateway 172.17.0.1) unless the host routes it
        already, then the next free default pool, as dockerd does at start."""
        return self.add_network(network_id, in_use=in_use)

    def _check_overlap(self, net: Network) -> None:
        other = _overlapping(net, self._subnets_in_use())
        if other is not None:
            raise AlreadyExists(f"invalid pool request: Pool overlaps with other one on this address space "
                                f"({net} overlaps {other})")

    def get(self, network_id: str) -> NetworkAddresses:
        try:
            return self.networks[network_id]
        except KeyError:
            raise NotFound(f"network {network_id} has no address pool") from None

    def remove_network(self, network_id: str) -> None:
        self.networks.pop(network_id, None)

    def allocate(self, network_id: str, requested: str = "") -> str:
        """An IPv4 address for an endpoint (the requested one when given)."""
        return self.get(network_id).v4.allocate(requested)

    def allocate6(self, network_id: str, requested: str = "") -> str:
        pool = self.get(network_id).v6
        if pool is None:
            raise InvalidArgument(f"network {network_id} has no IPv6 subnet")
        return pool.allocate(requested)

    def reserve(self, network_id: str, address: str) -> None:
        self.get(network_id).pool_for(address).reserve(address)

    def release(self, network_id: str, address: str) -> None:
        net = self.networks.get(network_id)
        if net is None:
            return
        for pool in net.pools():
            if pool.contains(address):
                pool.release(address)

    def to_dict(self) -> dict[str, Any]:
        return {"networks": {nid: {"v4": n.v4.to_dict(), "v6": n.v6.to_dict() if n.v6 is not None else None}
                             for nid, n in sorted(self.networks.items())}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ipam:
        ipam = cls()
        for nid, n in data.get("networks", {}).items():
            ipam.networks[nid] = NetworkAddresses(Pool.from_dict(n["v4"]), Pool.from_dict(n["v6"]) if n.get("v6") else None)
        return ipam
