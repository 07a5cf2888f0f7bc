"""The network building blocks stay cheap to import: pyroute2 (~0.3 s) is loaded only when a
netlink function runs."""

from __future__ import annotations

import subprocess
import sys


def test_pyroute2_is_imported_lazily() -> None:
    code = ("import sys, dockyard.network.ipam, dockyard.network.netlink, dockyard.network.firewall; "
            "print('pyroute2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_netns_paths() -> None:
    from dockyard.network.netlink import netns_path

    assert netns_path(42) == "/proc/42/ns/net"
    assert netns_path("42") == "/proc/42/ns/net"
    assert netns_path("box") == "/run/netns/box"
    assert netns_path("/var/run/dockyard/netns/x") == "/var/run/dockyard/netns/x"
