"""Networks: Docker's bridge, host and none networks over dockyard.network's kernel parts.

The daemon keeps one JSON file per network under <data-root>/networks (written atomically)
and a container's endpoints in the container's own record (`Container.networks`). The kernel
side is made when a container starts and undone when it stops:

- bridge networks: a Linux bridge with the gateway address (`dyd0` for the default network,
  `dy-<id12>` for user-defined ones), a veth pair per endpoint whose container end becomes
  `eth0`, `eth1`, ... in the container's network namespace, addresses from the network's IPAM;
- one nftables table (`ip dockyard`) recomputed from the whole model whenever it changes:
  masquerade, isolation between networks, DNAT for published ports; a userland proxy per
  published port for connections from the host itself;
- on user-defined networks an embedded DNS server on 127.0.0.11 inside the container's
  namespace answers container names, aliases and short IDs of the same networks.

After a daemon restart the bridges and the table are found again (made idempotently), the
addresses of running containers are taken back, and the resolvers and proxies restarted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from dockyard.errors import AlreadyExists, DockyardError, InvalidArgument, NotFound, WrongState
from dockyard.network.ipam import mac_for
from dockyard.services import links
from dockyard.utils.fileio import write_json_atomic

log = logging.getLogger("dockyard.networks")

DEFAULT_BRIDGE = "dyd0"
BUILTIN = ("bridge", "host", "none")


ADDRESS_KEYS = ("IPAddress", "GlobalIPv6Address")  # an endpoint's addresses, IPv4 then IPv6


@dataclass
class Network:
    id: str
    name: str
    driver: str                          # bridge | host | null
    created: str
    subnet: str = ""
    gateway: str = ""
    ip_range: str = ""
    aux_addresses: dict[str, str] = field(default_factory=dict)   # IPAM AuxiliaryAddresses: never handed out
    internal: bool = False
    attachable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    bridge: str = ""                     # the Linux bridge (bridge driver)
    enable_ipv6: bool = False
    subnet6: str = ""                    # the IPAM config's IPv6 entry (kept even without enable_ipv6)
    gateway6: str = ""
    ip_range6: str = ""

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN

    @property
    def user_defined(self) -> bool:
        return self.driver == "bridge" and self.name != "bridge"

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Network:
        known = {k: v for k, v in value.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def now_rfc3339() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


class NetworkStore:
    """The networks' records on disk."""

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o700, exist_ok=True)

    def load(self) -> list[Network]:
        out = []
        for name in sorted(os.listdir(self.root)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.root, name), encoding="utf-8") as handle:
                    out.append(Network.from_json(json.load(handle)))
            except (OSError, ValueError, TypeError) as e:
                log.error("network record %s is unreadable: %s", name, e)
        return out

    def save(self, net: Network) -> None:
        write_json_atomic(os.path.join(self.root, f"{net.id}.json"), asdict(net), 0o600)

    def delete(self, net: Network) -> None:
        try:
            os.unlink(os.path.join(self.root, f"{net.id}.json"))
        except FileNotFoundError:
            pass


def parse_port_bindings(bindings: dict[str, Any] | None) -> list[tuple[str, int, str, str]]:
    """HostConfig.PortBindings -> [(proto, container port, host ip, host port text)]."""
    out = []
    for key, values in (bindings or {}).items():
        port, _, proto = str(key).partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp"):
            raise InvalidArgument(f"published port {key}: protocol {proto!r} is not supported (tcp, udp)")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidArgument(f"invalid container port {key!r}")
        for b in values or [{}]:
            host_ip = str((b or {}).get("HostIp") or "")
            host_port = str((b or {}).get("HostPort") or "")
            out.append((proto, int(port), host_ip, host_port))
    return out


@dataclass
class _Published:
    proto: str
    container_port: int
    host_ip: str
    host_port: int
    container_ip: str
    proxy: Any = None




class NetworkService:
    """Networks, and the network side of containers' lives (see the module docstring)."""

    def __init__(self, data_root: str, containers: Any, events: Any, kernel: Any,
                 default_bridge: str = DEFAULT_BRIDGE) -> None:
        self.store = NetworkStore(os.path.join(data_root, "networks"))
        self.containers = containers
        self.events = events
        self.kernel = kernel                      # dockyard.services.netkernel.Kernel
        self.networks: dict[str, Network] = {n.id: n for n in self.store.load()}
        self._lock = asyncio.Lock()
        self._resolvers: dict[str, Any] = {}      # container id -> its DNS resolver
        self._published: dict[str, list[_Published]] = {}
        self.default_bridge = default_bridge      # "none": the default network gives only a loopback
        self._ensure_builtin()

    # --- records ------------------------------------------------------------------------

    def _ensure_builtin(self) -> None:
        names = {n.name for n in self.networks.values()}
        for name, driver in (("bridge", "bridge"), ("host", "host"), ("none", "null")):
            if name == "bridge" and self.default_bridge == "none":
                continue
            if name in names:
                continue
            net = Network(secrets.token_hex(32), name, driver, now_rfc3339(),
                          options={"com.docker.network.bridge.default_bridge": "true",
                                   "com.docker.network.bridge.name": self.default_bridge} if name == "bridge" else {})
            if name == "bridge":
                net.subnet, net.gateway = self.kernel.default_subnet([n.subnet for n in self.networks.values()
                                                                       if n.subnet])
                net.bridge = self.default_bridge
            self.networks[net.id] = net
            self.store.save(net)

    def list(self) -> list[Network]:
        return sorted(self.networks.values(), key=lambda n: (not n.builtin, n.name))

    def get(self, ref: str) -> Network:
        for net in self.networks.values():
            if net.name == ref or net.id == ref:
                return net
        found = [n for n in self.networks.values() if ref and n.id.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InvalidArgument(f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    def endpoints(self, net: Network) -> list[tuple[Any, dict[str, Any]]]:
        out = []
        for c in self.containers.list():
            ep = c.networks.get(net.name)
            if ep is not None and ep.get("NetworkID") == net.id and c.state.running:
                out.append((c, ep))
        return out

    def _members(self, net: Network) -> list[tuple[Any, dict[str, Any]]]:
        """Containers attached to the network, running or not."""
        return [(c, c.networks[net.name]) for c in self.containers.list()
                if c.networks.get(net.name, {}).get("NetworkID") == net.id]

    def _event(self, action: str, net: Network, extra: dict[str, str] | None = None) -> None:
        self.events.publish("network", action, net.id, {"name": net.name, "type": net.driver, **(extra or {})})

    async def create(self, name: str, *, driver: str = "bridge", ipam_config: list[dict[str, Any]] | None = None,
                     internal: bool = False, attachable: bool = False, labels: dict[str, str] | None = None,
                     options: dict[str, str] | None = None, enable_ipv6: bool = False) -> Network:
        if driver not in ("bridge",):
            if driver in ("host", "null"):
                raise WrongState(f"only one instance of \"{driver}\" network is allowed")
            raise NotFound(f"plugin \"{driver}\" not found")
        async with self._lock:
            if any(n.name == name for n in self.networks.values()):
                raise AlreadyExists(f"network with name {name} already exists")
            conf, conf6 = _split_ipam(ipam_config or [])
            used = [n.subnet for n in self.networks.values() if n.subnet]
            # in a thread: pyroute2 runs an event loop of its own
            aux = {str(k): str(v) for k, v in (conf.get("AuxiliaryAddresses") or {}).items()}
            subnet, gateway, ip_range = await asyncio.to_thread(
                self.kernel.plan_subnet, conf.get("Subnet") or "", conf.get("Gateway") or "", conf.get("IPRange") or "",
                used, aux)
            net = Network(secrets.token_hex(32), name, "bridge", now_rfc3339(), subnet, gateway, ip_range, aux,
                          internal, attachable, dict(labels or {}), dict(options or {}), enable_ipv6=enable_ipv6)
            if conf6:
                net.subnet6, net.gateway6, net.ip_range6 = self.kernel.plan_subnet6(
                    conf6.get("Subnet") or "", conf6.get("Gateway") or "", conf6.get("IPRange") or "",
                    [n.subnet6 for n in self.networks.values() if n.subnet6])
            elif enable_ipv6:
                raise InvalidArgument("an IPv6 network needs an IPv6 subnet (docker network create --ipv6 "
                                      "--subnet fd00:1::/64): there is no default IPv6 pool")
            net.bridge = (options or {}).get("com.docker.network.bridge.name") or f"dy-{net.id[:12]}"
            if len(net.bridge) > 15:
                raise InvalidArgument(f"bridge name {net.bridge!r} is longer than 15 characters")
            self.networks[net.id] = net
            self.store.save(net)
        self._event("create", net)
        return net

    async def remove(self, ref: str) -> None:
        net = self.get(ref)
        if net.builtin:
            raise WrongState(f"{net.name} is a pre-defined network and cannot be removed")
        async with self._lock:
            members = self._members(net)
            if members:
                ids = ", ".join(c.id[:12] for c, _ in members)
                raise WrongState(f"error while removing network: network {net.name} id {net.id} has active endpoints "
                                 f"({ids})")
            await self.kernel.remove_bridge(net)
            del self.networks[net.id]
            self.store.delete(net)
            await self._sync_firewall()
        self._event("destroy", net)

    async def prune(self, keep: Callable[[Network], bool] | None = None, until: str | None = None) -> list[str]:
        removed = []
        for net in list(self.networks.values()):
            if net.builtin or self._members(net) or (keep is not None and not keep(net)):
                continue
            if until and net.created >= until:
                continue
            try:
                await self.remove(net.id)
            except DockyardError as e:
                log.warning("prune: network %s: %s", net.name, e)
                continue
            removed.append(net.name)
        return removed

    # --- containers: create ---------------------------------------------------------------

    def plan(self, c: Any, networking: dict[str, Any] | None) -> None:
        """At create: the networks the container will join (`c.networks`), checked now."""
        mode = str(c.host_config.get("NetworkMode") or "default")
        endpoints = dict((networking or {}).get("EndpointsConfig") or {})
        c.networks = {}
        if mode.startswith("container:"):
            if endpoints:
                raise InvalidArgument("conflicting options: container type network can't be used with other networks")
            return
        primary = "bridge" if mode == "default" else mode
        if primary == "bridge" and self.default_bridge == "none":
            others = [k for k, v in endpoints.items()
                      if k not in ("default", "bridge") or any((v or {}).get(x) for x in ("IPAMConfig", "Aliases", "MacAddress"))]
            if others:
                raise InvalidArgument("the default bridge network is disabled (dockyardd --bridge none)")
            if c.host_config.get("PortBindings") or c.host_config.get("PublishAllPorts"):
                raise InvalidArgument("published ports need a bridge network, and the default bridge is disabled "
                                      "(dockyardd --bridge none): use a user-defined network")
            return  # a private namespace with only a loopback interface
        net = self.get(primary)
        if "default" in endpoints:  # the CLI names the default network "default"
            endpoints.setdefault(net.name, endpoints.pop("default"))
        if net.driver in ("host", "null") and any(self.get(n).id != net.id for n in endpoints):
            raise InvalidArgument(f"container cannot be disconnected from host network or connected to {net.name} "
                                  "and another network at the same time")
        order = [net] + [self.get(n) for n in endpoints if self.get(n).id != net.id]
        for n in order:
            config = endpoints.get(n.name) or endpoints.get(n.id) or (endpoints.get(primary) if n is net else None) or {}
            c.networks[n.name] = self._endpoint(c, n, config)

    def _endpoint(self, c: Any, net: Network, config: dict[str, Any]) -> dict[str, Any]:
        ipam = dict(config.get("IPAMConfig") or {})
        aliases = [str(a) for a in (config.get("Aliases") or [])]
        if ipam.get("IPv4Address") and not net.user_defined:
            raise InvalidArgument("user specified IP address is supported on user defined networks only")
        for key, version in (("IPv4Address", 4), ("IPv6Address", 6)):
            if ipam.get(key):
                try:
                    family = ipaddress.ip_address(str(ipam[key])).version
                except ValueError:
                    raise InvalidArgument(f"invalid {key} {ipam[key]!r}") from None
                if family != version:
                    raise InvalidArgument(f"{key} {ipam[key]!r} is not an IPv{version} address")
        if ipam.get("IPv4Address"):
            self.kernel.check_address(net, ipam["IPv4Address"])
        if ipam.get("IPv6Address"):
            if not net.user_defined:
                raise InvalidArgument("user specified IP address is supported on user defined networks only")
            if net.subnet6:
                self.kernel.check_address(net, ipam["IPv6Address"])
        if aliases and not net.user_defined:
            raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
        dns_names = [c.name, c.id[:12], *aliases] if net.user_defined else None
        mac = str(config.get("MacAddress") or "")
        if mac and not re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", mac):
            raise InvalidArgument(f"invalid MAC address: {mac}")
        if mac and net.driver in ("host", "null"):
            raise InvalidArgument("conflicting options: mac-address and the network mode")
        return {"_RequestedMac": mac.lower() or None, "IPAMConfig": ipam or None, "Links": config.get("Links"),
                "Aliases": aliases or None, "MacAddress": "", "DriverOpts": config.get("DriverOpts"), "NetworkID": net.id, "EndpointID": "",
                "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0, "DNSNames": dns_names}

    def netns_path(self, c: Any) -> str | None:
        """For `--network container:<id>`: the namespace to join (the other container must run)."""
        mode = str(c.host_config.get("NetworkMode") or "")
        if not mode.startswith("container:"):
            return None
        other = self.containers.get(mode.split(":", 1)[1])
        if other.id == c.id:
            raise InvalidArgument("cannot join own network namespace")
        if not other.state.running or not other.state.pid:
            raise WrongState(f"cannot join network of a non running container: {other.id}")
        return f"/proc/{other.state.pid}/ns/net"

    # --- containers: start and stop -------------------------------------------------------

    async def setup(self, c: Any, pid: int) -> None:
        """After the runtime made the container (its namespace exists), before it starts."""
        netns = f"/proc/{pid}/ns/net"
        async with self._lock:
            try:
                for index, (name, ep) in enumerate(c.networks.items()):
                    net = self.networks.get(ep.get("NetworkID", ""))
                    if net is None:
                        raise NotFound(f"network {name} not found (it was removed)")
                    if net.driver != "bridge":
                        continue
                    await self._attach(c, net, ep, netns, index)
                await self._publish(c)
                await self._sync_firewall()
            except BaseException:
                await self._release(c)
                raise
        await self._write_etc(c)
        if any(self.networks[ep["NetworkID"]].user_defined for ep in c.networks.values()
               if ep.get("NetworkID") in self.networks):
            await self._start_resolver(c, netns)

    async def _attach(self, c: Any, net: Network, ep: dict[str, Any], netns: str, index: int) -> None:
        await self.kernel.ensure_bridge(net)
        requested = (ep.get("IPAMConfig") or {}).get("IPv4Address") or ""
        ip, prefix = self.kernel.allocate(net, requested)
        ip6, prefix6 = "", 0
        host_if = f"veth{secrets.token_hex(4)[:7]}"
        attached = False
        try:
            if net.enable_ipv6 and net.subnet6:  # before the veth: a taken --ip6 fails with nothing made
                ip6, prefix6 = self.kernel.allocate(net, (ep.get("IPAMConfig") or {}).get("IPv6Address") or "",
                                                    version=6)
            mac = ep.get("_RequestedMac") or mac_for(ip)
            await self.kernel.attach(net, netns, host_if, f"eth{index}", ip, prefix, mac, default_route=index == 0)
            attached = True
            if ip6:
                await self.kernel.add_address(net, netns, f"eth{index}", ip6, prefix6, default_route=index == 0)
        except BaseException:
            for address in (ip, ip6):
                if address:
                    self.kernel.release(net, address)
            if attached:
                await self.kernel.delete_link(host_if)
            raise
        ep.update({"EndpointID": secrets.token_hex(32), "IPAddress": ip, "IPPrefixLen": prefix,
                   "Gateway": net.gateway, "MacAddress": mac, "_HostInterface": host_if, "_Interface": f"eth{index}"})
        if ip6:
            ep.update({"GlobalIPv6Address": ip6, "GlobalIPv6PrefixLen": prefix6, "IPv6Gateway": net.gateway6})

    async def teardown(self, c: Any) -> None:
        """The container stopped: its addresses, proxies, resolver and rules go."""
        async with self._lock:
            await self._release(c)
            await self._sync_firewall()

    async def _stop_helpers(self, cid: str) -> None:
        """The container's DNS resolver and port proxies stop."""
        resolver = self._resolvers.pop(cid, None)
        if resolver is not None:
            await resolver.close()
        for pub in self._published.pop(cid, []):
            if pub.proxy is not None:
                await pub.proxy.close()

    async def _release(self, c: Any) -> None:
        await self._stop_helpers(c.id)
        for ep in c.networks.values():
            net = self.networks.get(ep.get("NetworkID", ""))
            if net is not None:
                self._release_addresses(net, ep)
            if ep.get("_HostInterface"):
                await self.kernel.delete_link(ep["_HostInterface"])
            for key in ("EndpointID", "IPAddress", "Gateway", "MacAddress", "GlobalIPv6Address", "IPv6Gateway"):
                ep[key] = ""
            ep["IPPrefixLen"] = ep["GlobalIPv6PrefixLen"] = 0
            ep.pop("_HostInterface", None)
            ep.pop("_Interface", None)

    def _release_addresses(self, net: Network, ep: dict[str, Any]) -> None:
        """An endpoint's IPv4 and IPv6 addresses go back to the network's pools."""
        for key in ADDRESS_KEYS:
            if ep.get(key):
                self.kernel.release(net, ep[key])

    def ports(self, c: Any) -> dict[str, list[dict[str, str]] | None]:
        """NetworkSettings.Ports: every exposed or published port and its host side."""
        out: dict[str, list[dict[str, str]] | None] = {k: None for k in (c.config.get("ExposedPorts") or {})}
        for pub in self._published.get(c.id, []):
            key = f"{pub.container_port}/{pub.proto}"
            bindings = out.get(key) or []
            out[key] = bindings
            bindings.append({"HostIp": pub.host_ip or "0.0.0.0", "HostPort": str(pub.host_port)})
        return out

    async def _publish(self, c: Any) -> None:
        bindings = parse_port_bindings(c.host_config.get("PortBindings"))
        if c.host_config.get("PublishAllPorts"):
            have = {(p, port) for p, port, _, _ in bindings}
            for key in c.config.get("ExposedPorts") or {}:
                port, _, proto = key.partition("/")
                if (proto or "tcp", int(port)) not in have:
                    bindings.append((proto or "tcp", int(port), "", ""))
        if not bindings:
            return
        ip = next((ep["IPAddress"] for ep in c.networks.values() if ep.get("IPAddress")), "")
        if not ip:
            raise InvalidArgument("published ports need a bridge network (the container has no address)")
        published: list[_Published] = []
        self._published[c.id] = published
        for proto, port, host_ip, host_port in bindings:
            lo, _, hi = host_port.partition("-")
            wanted = int(lo) if lo.isdigit() else 0
            if hi:
                raise InvalidArgument(f"host port ranges are not implemented ({host_port})")
            pub = _Published(proto, port, host_ip, wanted, ip)
            pub.proxy = await self.kernel.start_proxy(proto, host_ip or "0.0.0.0", wanted, ip, port)
            pub.host_port = pub.proxy.port
            published.append(pub)

    async def _sync_firewall(self) -> None:
        running_nets = [n for n in self.networks.values() if n.driver == "bridge"]
        ports = [p for pubs in self._published.values() for p in pubs]
        await self.kernel.sync_firewall(running_nets, ports)

    # --- /etc/hosts, resolv.conf, DNS -----------------------------------------------------

    async def _write_etc(self, c: Any) -> None:
        files = self.containers.files(c.id)
        addresses = [ep["IPAddress"] for ep in c.networks.values() if ep.get("IPAddress")]
        hostname = str(c.config.get("Hostname") or c.id[:12])
        own6 = [f"{ep['GlobalIPv6Address']}\t{hostname}" for ep in c.networks.values() if ep.get("GlobalIPv6Address")]
        link_lines = own6[:1] + [links.hosts_line(address, alias, str(other.config.get("Hostname") or ""), other.name)
                                 for other, alias, address in self.containers.legacy_links(c)]
        # written whole each time: a restarted container has no stale address of an earlier run
        _write_in_place(files["hosts"], self.containers.hosts_text(c, addresses[0] if addresses else None, link_lines))
        if self.containers.host_config_list(c, "Dns"):
            return  # the user's --dns wins
        embedded = any(self.networks.get(ep.get("NetworkID", "")) is not None
                       and self.networks[ep["NetworkID"]].user_defined for ep in c.networks.values())
        if addresses or embedded:
            text = self.kernel.resolv_conf(embedded, self.containers.host_config_list(c, "DnsSearch"),
                                           self.containers.host_config_list(c, "DnsOptions"))
            _write_in_place(files["resolv.conf"], text)

    async def _start_resolver(self, c: Any, netns: str) -> None:
        def lookup(name: str) -> list[str]:
            return self.resolve_name(c, name)

        def reverse(address: str) -> list[str]:
            return self.reverse_name(c, address)

        self._resolvers[c.id] = await self.kernel.start_resolver(netns, lookup, reverse)

    def _peers(self, asking: Any) -> Iterator[tuple[str, Any, dict[str, Any]]]:
        """(network name, container, its endpoint) for every running container with an address
        on a user-defined network `asking` is attached to."""
        for net_name, mine in asking.networks.items():
            net = self.networks.get(mine.get("NetworkID", ""))
            if net is None or not net.user_defined:
                continue
            for other in self.containers.list():
                ep = other.networks.get(net_name)
                if ep and ep.get("IPAddress") and other.state.running:
                    yield net_name, other, ep

    def resolve_name(self, asking: Any, name: str) -> list[str]:
        """The addresses `name` has on the user-defined networks `asking` is attached to; the
        endpoint's links ("container:alias") add names only `asking` sees."""
        name = name.rstrip(".").lower()
        linked = {net_name: links.aliased(ep.get("Links"), name) for net_name, ep in asking.networks.items()}
        found: list[str] = []
        for net_name, other, ep in self._peers(asking):
            names = {other.name.lower(), other.id[:12], *(a.lower() for a in (ep.get("Aliases") or []))}
            names |= {f"{n}.{net_name.lower()}" for n in list(names)}
            if name in names or names & linked[net_name]:
                for address in (ep["IPAddress"], ep.get("GlobalIPv6Address")):
                    if address and address not in found:
                        found.append(address)  # the resolver answers A or AAAA from these
        return found

    def reverse_name(self, asking: Any, address: str) -> list[str]:
        """PTR: "name.network" for a container address on a network `asking` shares."""
        for net_name, other, ep in self._peers(asking):
            if address in (ep["IPAddress"], ep.get("GlobalIPv6Address")):
                return [f"{other.name}.{net_name}"]
        return []

    # --- connect, disconnect, restore -----------------------------------------------------

    async def connect(self, ref: str, container: str, config: dict[str, Any]) -> None:
        net = self.get(ref)
        c = self.containers.get(container)
        if net.driver != "bridge":
            raise WrongState(f"container cannot be connected to network {net.name} ({net.driver})")
        mode = str(c.host_config.get("NetworkMode") or "")
        if mode.startswith("container:") or any(self.networks.get(ep.get("NetworkID", ""), net).driver != "bridge"
                                                for ep in c.networks.values()):
            raise WrongState("container sharing network namespace with another container or host cannot be "
                             "connected to any other network")
        if net.name in c.networks:
            raise AlreadyExists(f"endpoint with name {c.name} already exists in network {net.name}")
        c.networks[net.name] = self._endpoint(c, net, config)
        if _has_namespace(c):  # created (its init waits to start) or running: attach now
            async with self._lock:
                try:
                    await self._attach(c, net, c.networks[net.name], f"/proc/{c.state.pid}/ns/net",
                                       _next_index(c.networks))
                    await self._sync_firewall()
                except BaseException:
                    c.networks.pop(net.name, None)
                    raise
            if net.user_defined and c.id not in self._resolvers:
                await self._start_resolver(c, f"/proc/{c.state.pid}/ns/net")
        self.containers.save(c)
        self._event("connect", net, {"container": c.id})

    async def disconnect(self, ref: str, container: str, force: bool = False) -> None:
        net = self.get(ref)
        c = self.containers.get(container)
        ep = c.networks.get(net.name)
        if ep is None:  # also with force, as Docker does (force is for endpoints of vanished containers)
            raise WrongState(f"container {c.id[:12]} is not connected to network {net.name}")
        if net.driver != "bridge":
            raise WrongState(f"container cannot be disconnected from network {net.name}")
        async with self._lock:
            self._release_addresses(net, ep)
            if _has_namespace(c) and ep.get("_Interface"):
                await self.kernel.remove_interface(f"/proc/{c.state.pid}/ns/net", ep["_Interface"])
            if ep.get("_HostInterface"):
                await self.kernel.delete_link(ep["_HostInterface"])
            del c.networks[net.name]
            await self._sync_firewall()
        self.containers.save(c)
        self._event("disconnect", net, {"container": c.id})

    async def restore(self) -> None:
        """After a daemon start: take back running containers' addresses; clear the others'."""
        async with self._lock:
            for c in self.containers.list():
                if not c.networks:
                    continue
                if c.state.running and c.state.pid:
                    for ep in c.networks.values():
                        net = self.networks.get(ep.get("NetworkID", ""))
                        if net is not None and ep.get("IPAddress"):
                            await self.kernel.ensure_bridge(net)
                            for key in ADDRESS_KEYS:
                                if ep.get(key):
                                    self.kernel.reserve(net, ep[key])
                    try:
                        await self._publish(c)
                    except DockyardError as e:
                        log.warning("container %s: its published ports could not be restored: %s", c.id[:12], e)
                else:
                    await self._release(c)
                    self.containers.save(c)
            await self._sync_firewall()
        for c in self.containers.list():
            if c.state.running and c.state.pid and any(
                    self.networks.get(ep.get("NetworkID", "")) is not None
                    and self.networks[ep["NetworkID"]].user_defined for ep in c.networks.values()):
                try:
                    await self._start_resolver(c, f"/proc/{c.state.pid}/ns/net")
                except DockyardError as e:
                    log.warning("container %s: its DNS resolver could not be restarted: %s", c.id[:12], e)

    async def close(self) -> None:
        """Daemon shutdown: resolvers and proxies stop (the containers and their rules stay)."""
        for cid in set(self._resolvers) | set(self._published):
            await self._stop_helpers(cid)


def _has_namespace(c: Any) -> bool:
    """The container's init exists (created and waiting, or running): its namespace is there."""
    return bool(c.state.pid) and c.state.status in ("created", "running", "paused")


def _next_index(networks: dict[str, dict[str, Any]]) -> int:
    used = {int(str(ep.get("_Interface") or "eth-1")[3:]) for ep in networks.values() if ep.get("_Interface")}
    index = 0
    while index in used:
        index += 1
    return index


def _write_in_place(path: str, text: str) -> None:
    """Rewrite a file the container has bind-mounted (a rename would leave the mount on the old file)."""
    with open(path, "r+" if os.path.exists(path) else "w", encoding="utf-8") as handle:
        handle.seek(0)
        handle.write(text)
        handle.truncate()


def _split_ipam(configs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """IPAM.Config: at most one IPv4 entry (the first without an IPv6 subnet) and one IPv6 entry."""
    v4: list[dict[str, Any]] = []
    v6: list[dict[str, Any]] = []
    for conf in configs:
        conf = dict(conf or {})
        subnet = str(conf.get("Subnet") or "")
        try:
            version = ipaddress.ip_network(subnet, strict=False).version if subnet else 4
        except ValueError:
            raise InvalidArgument(f"invalid subnet {subnet!r}") from None
        (v6 if version == 6 else v4).append(conf)
    if len(v4) > 1 or len(v6) > 1:
        raise InvalidArgument("one IPv4 and one IPv6 subnet per network are supported")
    return (v4 or [{}])[0], (v6 or [{}])[0] if v6 else {}
