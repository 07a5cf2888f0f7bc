"""Resolving paths inside a container root without ever leaving it.

A rootfs is untrusted: any component of a mount destination may be a symlink planted by the
image (`/etc -> /`, `../../..`). `secure_join` resolves component by component, treating the
rootfs as `/` for absolute links and clamping `..` at the root, like a chroot would.
"""

from __future__ import annotations

import errno
import os

_MAX_LINKS = 255


def secure_join(root: str, unsafe: str) -> str:
    """Return the host path for `unsafe` inside `root`; the result is always under `root`."""
    root = os.path.abspath(root)
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            target = os.readlink(candidate)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                resolved.append(part)
                continue
            raise
        links += 1
        if links > _MAX_LINKS:
            raise OSError(errno.ELOOP, f"too many symlinks resolving {unsafe!r} in {root}")
        if target.startswith("/"):
            resolved = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return os.path.join(root, *resolved)


def mkdir_all_in(root: str, unsafe: str, mode: int = 0o755) -> str:
    """Create `unsafe` (and its parents) inside `root`, resolving each step safely."""
    path = secure_join(root, unsafe)
    os.makedirs(path, mode=mode, exist_ok=True)
    return path
