"""The kernel side of networks, for the network service: subnets, addresses, bridges, veths,
the nftables table, proxies and resolvers - over dockyard.network's parts.

Addresses are kept in memory per network: the service gives back the addresses of running
containers after a restart (`reserve`), so nothing of the allocation is stored twice.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from dockyard.errors import AlreadyExists, InvalidArgument, WrongState

log = logging.getLogger("dockyard.networks")

# Docker's default pools: 172.17-31.0.0/16, then 192.168.0.0/16 in /20s
DEFAULT_POOLS = [ipaddress.ip_network(f"172.{n}.0.0/16") for n in range(17, 32)] + \
    list(ipaddress.ip_network("192.168.0.0/16").subnets(new_prefix=20))


def _overlaps(net: ipaddress.IPv4Network, used: list[ipaddress.IPv4Network]) -> bool:
    return any(net.overlaps(u) for u in used)


class Kernel:
    def __init__(self) -> None:
        self._allocated: dict[str, set[str]] = {}   # network id -> addresses in use
        self._bridges: set[str] = set()
        self._firewall_used = False

    # --- subnets and addresses ----------------------------------------------------------

    def host_routes(self) -> list[ipaddress.IPv4Network]:
        """Subnets this namespace routes already, except through our own bridges (a new network
        must not overlap them)."""
        from pyroute2 import IPRoute

        out = []
        with IPRoute() as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            for route in ipr.get_routes(family=2):
                dst = route.get_attr("RTA_DST")
                if not dst or route["dst_len"] == 0:
                    continue
                if names.get(route.get_attr("RTA_OIF"), "") in self._bridges:
                    continue
                out.append(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False))
        return out

    def _free_pool(self, used_text: list[str]) -> ipaddress.IPv4Network:
        used = [ipaddress.ip_network(u, strict=False) for u in used_text if u] + self.host_routes()
        for pool in DEFAULT_POOLS:
            if not _overlaps(pool, used):
                return pool
        raise WrongState("all predefined address pools have been fully subnetted")

    def default_subnet(self, used: list[str]) -> tuple[str, str]:
        pool = self._free_pool(used)
        return str(pool), str(next(pool.hosts()))

    def plan_subnet(self, subnet: str, gateway: str, ip_range: str, used: list[str]) -> tuple[str, str, str]:
        if not subnet:
            if gateway or ip_range:
                raise InvalidArgument("a gateway or an ip-range needs a subnet")
            pool = self._free_pool(used)
            return str(pool), str(next(pool.hosts())), ""
        try:
            net = ipaddress.ip_network(subnet, strict=False)
        except ValueError as e:
            raise InvalidArgument(f"invalid subnet {subnet}: {e}") from None
        if net.version != 4:
            raise InvalidArgument("only IPv4 subnets are supported")
        if net.prefixlen > 30:
            raise InvalidArgument(f"subnet {subnet} is too small")
        for other in used:
            if other and net.overlaps(ipaddress.ip_network(other, strict=False)):
                raise AlreadyExists(f"invalid pool request: Pool overlaps with other one on this address space")
        gw = gateway or str(next(net.hosts()))
        if ipaddress.ip_address(gw) not in net:
            raise InvalidArgument(f"gateway {gw} is not in subnet {net}")
        if ip_range:
            rng = ipaddress.ip_network(ip_range, strict=False)
            if not rng.subnet_of(net):  # type: ignore[arg-type]
                raise InvalidArgument(f"ip-range {ip_range} is not in subnet {net}")
            ip_range = str(rng)
        return str(net), gw, ip_range

    def check_address(self, net: Any, address: str) -> None:
        if not net.subnet:
            raise InvalidArgument(f"network {net.name} has no subnet")
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address {address!r}") from None
        subnet = ipaddress.ip_network(net.subnet)
        if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address) or str(ip) == net.gateway:
            raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {address}")

    def allocate(self, net: Any, requested: str = "") -> tuple[str, int]:
        used = self._allocated.setdefault(net.id, set())
        subnet = ipaddress.ip_network(net.subnet)
        if requested:
            self.check_address(net, requested)
            if requested in used:
                raise AlreadyExists(f"Address already in use: {requested}")
            used.add(requested)
            return requested, subnet.prefixlen
        span = ipaddress.ip_network(net.ip_range) if net.ip_range else subnet
        for host in span.hosts():
            text = str(host)
            if text != net.gateway and text not in used and host != subnet.broadcast_address:
                used.add(text)
                return text, subnet.prefixlen
        raise WrongState(f"no available IPv4 addresses on network {net.name}")

    def reserve(self, net: Any, address: str) -> None:
        self._allocated.setdefault(net.id, set()).add(address)

    def release(self, net: Any, address: str) -> None:
        self._allocated.get(net.id, set()).discard(address)

    # --- links ---------------------------------------------------------------------------

    async def ensure_bridge(self, net: Any) -> None:
        from dockyard.network import links as netlink

        if net.bridge in self._bridges:
            return
        prefix = ipaddress.ip_network(net.subnet).prefixlen
        await asyncio.to_thread(netlink.ensure_bridge, net.bridge, f"{net.gateway}/{prefix}")
        self._bridges.add(net.bridge)

    async def remove_bridge(self, net: Any) -> None:
        from dockyard.network import links as netlink

        self._bridges.discard(net.bridge)
        self._allocated.pop(net.id, None)
        if net.bridge:
            await asyncio.to_thread(netlink.delete_link, net.bridge)

    async def attach(self, net: Any, netns: str, host_if: str, ifname: str, ip: str, prefix: int, mac: str,
                     default_route: bool) -> None:
        from dockyard.network import links as netlink

        await asyncio.to_thread(netlink.create_veth_into, host_if, f"{host_if}p", netns, net.bridge,
                                container_ifname=ifname, address_cidr=f"{ip}/{prefix}",
                                gateway=net.gateway if default_route else None, mac=mac)

    async def delete_link(self, name: str) -> None:
        from dockyard.network import links as netlink

        await asyncio.to_thread(netlink.delete_link, name)

    async def remove_interface(self, netns: str, ifname: str) -> None:
        from dockyard.network import links as netlink

        await asyncio.to_thread(netlink.remove_interface_in, netns, ifname)

    # --- rules, proxies, DNS --------------------------------------------------------------

    async def sync_firewall(self, networks: list[Any], ports: list[Any]) -> None:
        if not networks and not ports and not self._firewall_used:
            return  # nothing was ever set up: leave nftables alone (no bridge networks here)
        self._firewall_used = True
        from dockyard.network import nftables as firewall

        bridges = [firewall.BridgeRule(n.bridge, n.subnet, n.internal) for n in networks
                   if n.bridge and n.bridge in self._bridges]
        rules = [firewall.PortRule(p.proto, p.host_ip, p.host_port, p.container_ip, p.container_port) for p in ports]
        await asyncio.to_thread(firewall.Firewall().sync, bridges, rules)

    async def start_proxy(self, proto: str, host_ip: str, host_port: int, container_ip: str, container_port: int) -> Any:
        from dockyard.network.proxy import PortProxy

        proxy = PortProxy(host_ip, host_port, container_ip, container_port, (proto,))
        await proxy.start()
        proxy.port = proxy.ports[proto]  # what the service shows (host port 0 picked one)
        return proxy

    def resolv_conf(self, embedded: bool, search: list[str], options: list[str]) -> str:
        from dockyard.network.dns import resolv_conf_for_container

        try:
            with open("/etc/resolv.conf", encoding="utf-8") as handle:
                host = handle.read()
        except OSError:
            host = ""
        text: str = resolv_conf_for_container(host, embedded)
        if search:
            text += "search " + " ".join(search) + "\n"
        if options:
            text += "options " + " ".join(options) + "\n"
        return text

    async def start_resolver(self, netns: str, lookup: Callable[[str], list[str]],
                             reverse: Callable[[str], list[str]] | None = None) -> Any:
        from dockyard.network.dns import Resolver, host_nameservers

        resolver = Resolver(netns, lookup, reverse=reverse, upstreams=host_nameservers())
        await resolver.start()
        return resolver
