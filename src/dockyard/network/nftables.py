"""Dockyard's nftables table: NAT, isolation and published ports, replaced as a whole.

The whole table (`ip dockyard`) is computed from the model (bridge networks and published
ports) and loaded in one `nft -f -` transaction that deletes the old table and adds the new
one, so the rules are always exactly the model's and a daemon restart finds (and replaces)
what it made instead of adding to it. No other table is touched.

- postrouting: masquerade what leaves a network's subnet through another interface;
- forward: established traffic passes; traffic between two different Dockyard bridges is
  dropped (isolation); an internal network's traffic does not leave its bridge;
- prerouting/output: published ports, DNAT to the container, for traffic to a local address
  from elsewhere and from the host itself (loopback connections go through the userland proxy).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from dockyard.errors import NotImplementedFeature, SystemFailure

TABLE = "dockyard"


@dataclass(frozen=True)
class BridgeRule:
    bridge: str
    subnet: str
    internal: bool = False


@dataclass(frozen=True)
class PortRule:
    proto: str            # tcp | udp
    host_ip: str          # "" or 0.0.0.0: every local address
    host_port: int
    container_ip: str
    container_port: int


def ruleset(bridges: list[BridgeRule], ports: list[PortRule]) -> str:
    """The table's text for `nft -f`."""
    lines = [f"table ip {TABLE} {{"]
    lines += ["  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;"]
    for b in bridges:
        if not b.internal:
            lines.append(f'    ip saddr {b.subnet} oifname != "{b.bridge}" masquerade')
    for p in ports:  # hairpin: a container reaching its own published port through the host
        lines.append(f"    ip saddr {p.container_ip} ip daddr {p.container_ip} {p.proto} dport {p.container_port} "
                     "masquerade")
    lines.append("  }")
    lines += ["  chain forward {", "    type filter hook forward priority filter; policy accept;",
              "    ct state established,related accept"]
    names = [b.bridge for b in bridges]
    for b in bridges:
        others = [n for n in names if n != b.bridge]
        if others:
            members = ", ".join(f'"{n}"' for n in others)
            lines.append(f'    iifname "{b.bridge}" oifname {{ {members} }} drop')
        if b.internal:
            lines.append(f'    iifname "{b.bridge}" oifname != "{b.bridge}" drop')
            lines.append(f'    oifname "{b.bridge}" iifname != "{b.bridge}" drop')
    lines.append("  }")
    lines += ["  chain ports {"]
    for p in ports:
        match = f"ip daddr {p.host_ip} " if p.host_ip not in ("", "0.0.0.0") else ""
        lines.append(f"    {match}{p.proto} dport {p.host_port} dnat to {p.container_ip}:{p.container_port}")
    lines.append("  }")
    lines += ["  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;",
              "    fib daddr type local jump ports", "  }"]
    lines += ["  chain output {", "    type nat hook output priority -100; policy accept;",
              "    ip daddr != 127.0.0.0/8 fib daddr type local jump ports", "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


class Firewall:
    def __init__(self, netns: str | None = None) -> None:
        """netns: a namespace path to act in (through nsenter); None: the current one."""
        self.netns = netns

    def _nft(self, script: str) -> None:
        nft = shutil.which("nft")
        if nft is None:
            raise NotImplementedFeature("nftables (the nft command) is not installed: bridge networks need it")
        argv = [nft, "-f", "-"]
        if self.netns:
            argv = ["nsenter", f"--net={self.netns}", *argv]
        proc = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise SystemFailure(f"nft failed: {proc.stderr.strip() or proc.stdout.strip()}")

    def sync(self, bridges: list[BridgeRule], ports: list[PortRule]) -> None:
        """Replace the table with the model's, atomically."""
        self._nft(f"table ip {TABLE} {{}}\ndelete table ip {TABLE}\n" + ruleset(bridges, ports))

    def clear(self) -> None:
        self._nft(f"table ip {TABLE} {{}}\ndelete table ip {TABLE}\n")
