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

from dockyard.errors import AlreadyExists, InvalidArgument

log = logging.getLogger("dockyard.networks")

class Kernel:
    def __init__(self) -> None:
        self._pools: dict[str, Any] = {}            # network id -> its ipam.Pool (addresses in use)
        self._bridges: set[str] = set()
        self._firewall_used = False

    # --- subnets and addresses ----------------------------------------------------------

    def host_routes(self) -> list[str]:
        """Subnets this namespace routes already, except through our own bridges (a new network
        must not overlap them)."""
        from dockyard.network import netlink

        return [r for r in netlink.routed_subnets(frozenset(self._bridges))
                if ipaddress.ip_network(r, strict=False).version == 4]

    def default_subnet(self, used: list[str]) -> tuple[str, str]:
        from dockyard.network import ipam

        pool = ipam.pick_subnet([u for u in used if u] + self.host_routes())
        return str(pool), str(next(pool.hosts()))

    def plan_subnet(self, subnet: str, gateway: str, ip_range: str, used: list[str],
                    aux_addresses: dict[str, str] | None = None) -> tuple[str, str, str]:
        """A new network's subnet, gateway and ip-range: checked, or picked from Docker's pools."""
        from dockyard.network import ipam

        if not subnet:
            if gateway or ip_range:
                raise InvalidArgument("a gateway or an ip-range needs a subnet")
            subnet, gateway = self.default_subnet(used)
        pool = ipam.Pool.create(subnet, gateway, ip_range, aux_addresses)
        if pool.subnet.version != 4:
            raise InvalidArgument("only IPv4 subnets are supported")
        for other in used:
            if other and pool.subnet.overlaps(ipaddress.ip_network(other, strict=False)):
                raise AlreadyExists("invalid pool request: Pool overlaps with other one on this address space")
        return str(pool.subnet), str(pool.gateway), str(pool.ip_range) if pool.ip_range else ""

    def plan_subnet6(self, subnet: str, gateway: str, ip_range: str, used: list[str]) -> tuple[str, str, str]:
        """A network's IPv6 subnet (given: Docker has no default IPv6 pool), gateway, ip-range."""
        from dockyard.network import ipam

        pool = ipam.Pool.create(subnet, gateway, ip_range)
        if pool.subnet.version != 6:
            raise InvalidArgument(f"{subnet} is not an IPv6 subnet")
        for other in used:
            if other and pool.subnet.overlaps(ipaddress.ip_network(other, strict=False)):
                raise AlreadyExists("invalid pool request: Pool overlaps with other one on this address space")
        return str(pool.subnet), str(pool.gateway), str(pool.ip_range) if pool.ip_range else ""

    def _pool(self, net: Any, version: int = 4) -> Any:
        from dockyard.network import ipam

        key = net.id if version == 4 else f"{net.id}/6"
        pool = self._pools.get(key)
        if pool is None:
            if version == 6:
                if not getattr(net, "subnet6", ""):
                    raise InvalidArgument(f"network {net.name} has no IPv6 subnet")
                pool = ipam.Pool.create(net.subnet6, net.gateway6, net.ip_range6)
            else:
                if not net.subnet:
                    raise InvalidArgument(f"network {net.name} has no subnet")
                pool = ipam.Pool.create(net.subnet, net.gateway, net.ip_range,
                                        getattr(net, "aux_addresses", None) or None)
            self._pools[key] = pool
        return pool

    def check_address(self, net: Any, address: str) -> None:
        try:
            version = ipaddress.ip_address(address).version
            inside = self._pool(net, version).contains(address)
        except ValueError:
            raise InvalidArgument(f"invalid IP address {address!r}") from None
        if not inside:
            raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {address}")

    def allocate(self, net: Any, requested: str = "", version: int = 4) -> tuple[str, int]:
        pool = self._pool(net, version)
        return pool.allocate(requested), pool.prefixlen

    def reserve(self, net: Any, address: str) -> None:
        self._pool(net, ipaddress.ip_address(address).version).reserve(address)

    def release(self, net: Any, address: str) -> None:
        pool = self._pools.get(net.id if ipaddress.ip_address(address).version == 4 else f"{net.id}/6")
        if pool is not None:
            pool.release(address)

    # --- links ---------------------------------------------------------------------------

    async def ensure_bridge(self, net: Any) -> None:
        from dockyard.network import netlink

        if net.bridge in self._bridges:
            return
        prefix = ipaddress.ip_network(net.subnet).prefixlen
        await asyncio.to_thread(netlink.ensure_bridge, net.bridge, f"{net.gateway}/{prefix}")
        if getattr(net, "enable_ipv6", False) and net.subnet6:
            prefix6 = ipaddress.ip_network(net.subnet6).prefixlen
            await asyncio.to_thread(netlink.add_address_in, None, net.bridge, f"{net.gateway6}/{prefix6}")
        self._bridges.add(net.bridge)

    async def remove_bridge(self, net: Any) -> None:
        from dockyard.network import netlink

        self._bridges.discard(net.bridge)
        self._pools.pop(net.id, None)
        self._pools.pop(f"{net.id}/6", None)
        if net.bridge:
            await asyncio.to_thread(netlink.delete_link, net.bridge)

    async def attach(self, net: Any, netns: str, host_if: str, ifname: str, ip: str, prefix: int, mac: str,
                     default_route: bool) -> None:
        from dockyard.network import netlink

        await asyncio.to_thread(netlink.create_veth_into, host_if, f"{host_if}p", netns, net.bridge,
                                container_ifname=ifname, address_cidr=f"{ip}/{prefix}",
                                gateway=net.gateway if default_route else None, mac=mac)

    async def add_address(self, net: Any, netns: str, ifname: str, address: str, prefix: int,
                          default_route: bool) -> None:
        """A second address on a container's interface: its IPv6 one (and the IPv6 default route)."""
        from dockyard.network import netlink

        await asyncio.to_thread(netlink.add_address_in, netns, ifname, f"{address}/{prefix}",
                                gateway=net.gateway6 if default_route else None)

    async def delete_link(self, name: str) -> None:
        from dockyard.network import netlink

        await asyncio.to_thread(netlink.delete_link, name)

    async def remove_interface(self, netns: str, ifname: str) -> None:
        from dockyard.network import netlink

        await asyncio.to_thread(netlink.remove_interface_in, netns, ifname)

    # --- rules, proxies, DNS --------------------------------------------------------------

    async def sync_firewall(self, networks: list[Any], ports: list[Any]) -> None:
        if not networks and not ports and not self._firewall_used:
            return  # nothing was ever set up: leave nftables alone (no bridge networks here)
        self._firewall_used = True
        from dockyard.network import firewall

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
