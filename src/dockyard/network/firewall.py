"""Dockyard's nftables rules, in its own table `ip dockyard`, computed from a model and replaced
atomically.

`Firewall.sync(networks, ports)` builds the whole table from the bridge networks and published
ports and loads it with one `nft -j -f -` transaction: add the table (so that the delete cannot
fail), delete it, add it again with every chain and rule. The kernel applies the batch all or
nothing, so the rules are always exactly the model's; a daemon restart replaces what it made
instead of adding to it. No other table is read or touched.

The table (the same hooks and priorities as Docker's iptables chains):

    postrouting  nat    srcnat  masquerade what leaves a (non-internal) network's subnet through
                                any other interface; masquerade DNATed traffic that goes back
                                out the bridge it came from (hairpin: a container reaching a
                                neighbour's published port through a host address)
    forward      filter filter  established/related: accept; between two different Dockyard
                                bridges: drop (isolation); an internal network: nothing in or out
                                of its bridge; everything else: accept (policy)
    prerouting   nat    dstnat  to a local address: jump ports
    output       nat    dstnat  locally generated, to a local non-loopback address: jump ports
    ports        (regular)      per published port: [ip daddr HOST_IP] PROTO dport HOST_PORT
                                dnat to CONTAINER_IP:CONTAINER_PORT

Loopback destinations are not DNATed (that needs route_localnet), and a container reaching its
own published port through a host address is not routed by the kernel once DNAT has made the
destination its source; the userland proxy (dockyard.network.proxy) serves both cases. A drop in another table on the same hook still
drops: base chains of all tables are traversed and an accept here is not final.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from dockyard.errors import InvalidArgument, NotImplementedFeature, SystemFailure

FAMILY = "ip"
TABLE = "dockyard"
PROTOCOLS = ("tcp", "udp", "sctp")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@+-]{1,15}$")


@dataclass(frozen=True)
class BridgeRule:
    """A bridge network: its Linux bridge and IPv4 subnet. `internal`: no traffic leaves or
    enters the bridge (`docker network create --internal`). `masquerade`: NAT outbound traffic
    (com.docker.network.bridge.enable_ip_masquerade)."""

    bridge: str
    subnet: str
    internal: bool = False
    masquerade: bool = True


@dataclass(frozen=True)
class PortRule:
    """A published port: HOST_IP:HOST_PORT/PROTO -> CONTAINER_IP:CONTAINER_PORT. An empty
    host_ip (or 0.0.0.0) means every local address."""

    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int


# --- the model as nftables JSON -----------------------------------------------------------------


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": field}}


def _prefix(cidr: str) -> dict[str, Any]:
    net = ipaddress.IPv4Network(cidr)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _ct(key: str) -> dict[str, Any]:
    return {"ct": {"key": key}}


_FIB_LOCAL = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")


def _check_bridge(rule: BridgeRule) -> None:
    if not _IFNAME.match(rule.bridge):
        raise InvalidArgument(f"invalid bridge name {rule.bridge!r}")
    try:
        ipaddress.IPv4Network(rule.subnet)
    except ValueError as exc:
        raise InvalidArgument(f"invalid subnet {rule.subnet!r} for bridge {rule.bridge}: {exc}") from None


def _check_port(rule: PortRule) -> None:
    if rule.proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid protocol {rule.proto!r} for published port {rule.host_port}: "
                              f"expected one of {', '.join(PROTOCOLS)}")
    for port in (rule.host_port, rule.container_port):
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidArgument(f"invalid port {port!r}: expected 1-65535")
    for what, text in (("host", rule.host_ip), ("container", rule.container_ip)):
        if what == "host" and text in ("", "0.0.0.0"):
            continue
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            raise InvalidArgument(f"invalid {what} IPv4 address {text!r} for published port {rule.host_port}") from None


def _rules(networks: list[BridgeRule], ports: list[PortRule]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(chain, expressions) of every rule, in order."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for net in networks:
        if net.internal:
            continue
        saddr = _match(_payload("ip", "saddr"), _prefix(net.subnet))
        if net.masquerade:
            out.append(("postrouting", [saddr, _match(_meta("oifname"), net.bridge, "!="), {"masquerade": None}]))
        out.append(("postrouting", [saddr, _match(_meta("oifname"), net.bridge),
                                    _match(_ct("status"), "dnat", "in"), {"masquerade": None}]))
    out.append(("forward", [_match(_ct("state"), ["established", "related"], "in"), {"accept": None}]))
    bridges = sorted({n.bridge for n in networks})
    for net in networks:
        others = [b for b in bridges if b != net.bridge]
        if others:
            out.append(("forward", [_match(_meta("iifname"), net.bridge),
                                    _match(_meta("oifname"), others[0] if len(others) == 1 else {"set": others}),
                                    {"drop": None}]))
        if net.internal:
            out.append(("forward", [_match(_meta("iifname"), net.bridge),
                                    _match(_meta("oifname"), net.bridge, "!="), {"drop": None}]))
            out.append(("forward", [_match(_meta("oifname"), net.bridge),
                                    _match(_meta("iifname"), net.bridge, "!="), {"drop": None}]))
    for port in ports:
        exprs: list[dict[str, Any]] = []
        if port.host_ip not in ("", "0.0.0.0"):
            exprs.append(_match(_payload("ip", "daddr"), port.host_ip))
        exprs.append(_match(_payload(port.proto, "dport"), port.host_port))
        exprs.append({"dnat": {"addr": port.container_ip, "port": port.container_port}})
        out.append(("ports", exprs))
    out.append(("prerouting", [_FIB_LOCAL, {"jump": {"target": "ports"}}]))
    out.append(("output", [_match(_payload("ip", "daddr"), _prefix("127.0.0.0/8"), "!="), _FIB_LOCAL,
                           {"jump": {"target": "ports"}}]))
    return out


_CHAINS: list[dict[str, Any]] = [
    {"name": "postrouting", "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"},
    {"name": "forward", "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"},
    {"name": "ports"},
    {"name": "prerouting", "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"},
    {"name": "output", "type": "nat", "hook": "output", "prio": -100, "policy": "accept"},
]


def _table() -> dict[str, Any]:
    return {"table": {"family": FAMILY, "name": TABLE}}


def _delete_batch() -> list[dict[str, Any]]:
    """Add-then-delete: removes the table whether or not it exists, without an error."""
    return [{"add": _table()}, {"delete": _table()}]


def ruleset(networks: list[BridgeRule], ports: list[PortRule]) -> dict[str, Any]:
    """The `nft -j -f -` document that replaces the table with the model's. Validates the
    model first (InvalidArgument)."""
    for net in networks:
        _check_bridge(net)
    if len({n.bridge for n in networks}) != len(networks):
        raise InvalidArgument("a bridge appears twice among the networks")
    for port in ports:
        _check_port(port)
    commands: list[dict[str, Any]] = _delete_batch() + [{"add": _table()}]
    for chain in _CHAINS:
        commands.append({"add": {"chain": {"family": FAMILY, "table": TABLE, **chain}}})
    for chain_name, exprs in _rules(networks, ports):
        commands.append({"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain_name, "expr": exprs}}})
    return {"nftables": commands}


# --- applying it ----------------------------------------------------------------------------


class Firewall:
    """Dockyard's table in one network namespace."""

    def __init__(self, netns: str | None = None) -> None:
        """netns: the path of the namespace to act in (nft runs under `nsenter --net=PATH`);
        None: the current one."""
        self.netns = netns

    def _argv(self, *args: str) -> list[str]:
        nft = shutil.which("nft")
        if nft is None:
            raise NotImplementedFeature("nftables: the nft command is not installed (bridge networks need it; "
                                        "install the nftables package)")
        argv = [nft, *args]
        if self.netns is not None:
            nsenter = shutil.which("nsenter")
            if nsenter is None:
                raise NotImplementedFeature("entering a network namespace: the nsenter command is not installed")
            argv = [nsenter, f"--net={self.netns}", "--", *argv]
        return argv

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        argv = self._argv(*args)
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            raise SystemFailure(f"nft {' '.join(args)} did not finish in 30 s") from None
        if proc.returncode != 0:
            where = f" in {self.netns}" if self.netns else ""
            raise SystemFailure(f"nft {' '.join(args)}{where} failed: {(proc.stderr or proc.stdout).strip()}")
        return proc.stdout

    def apply(self, document: dict[str, Any]) -> None:
        """Load one JSON batch; the kernel commits it all or nothing."""
        self._run(["-j", "-f", "-"], json.dumps(document))

    def sync(self, networks: list[BridgeRule], ports: list[PortRule]) -> None:
        """Replace the table with the one the model describes, atomically."""
        self.apply(ruleset(networks, ports))

    def clear(self) -> None:
        """Remove the table (and every rule Dockyard made); nothing when it is not there."""
        self.apply({"nftables": _delete_batch()})

    remove_all = clear

    def exists(self) -> bool:
        try:
            self.listing()
        except SystemFailure:
            return False
        return True

    def listing(self) -> list[dict[str, Any]]:
        """The table as `nft -j list table` shows it (the objects without metainfo)."""
        out = json.loads(self._run(["-j", "list", "table", FAMILY, TABLE]))
        return [item for item in out.get("nftables", []) if "metainfo" not in item]

    def rules(self) -> dict[str, list[list[dict[str, Any]]]]:
        """{chain: [rule expressions, ...]} of the table as loaded, for checks and debugging."""
        found: dict[str, list[list[dict[str, Any]]]] = {}
        for item in self.listing():
            if "chain" in item:
                found.setdefault(item["chain"]["name"], [])
            elif "rule" in item:
                found.setdefault(item["rule"]["chain"], []).append(item["rule"]["expr"])
        return found
