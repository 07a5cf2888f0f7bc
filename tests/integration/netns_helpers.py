"""Network namespaces for the network tests: made by the test, removed afterwards."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator


def is_mount_point(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


@contextlib.contextmanager
def named_netns() -> Iterator[str]:
    """A fresh `ip netns` namespace with lo up (its path); deleted afterwards. `ip netns add`
    makes /run/netns a mount point the first time; that mount is undone too if it was not
    there before and nothing else uses it."""
    had_mount = is_mount_point("/run/netns")
    name = f"dyt-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
        if not had_mount and is_mount_point("/run/netns") and not os.listdir("/run/netns"):
            subprocess.run(["umount", "/run/netns"], check=False)
