"""Mount descriptions, as a snapshotter returns them, and the helpers that carry them out.

A snapshotter never mounts: it says what to mount (containerd's rule), and the caller — the
runtime, an export, a test — mounts it where it wants, in the namespace it wants.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dockyard.errors import NotImplementedFeature, SystemFailure
from dockyard.linux import libc

_PAGE = 4096


@dataclass(frozen=True)
class Mount:
    type: str          # "bind" or "overlay"
    source: str
    options: tuple[str, ...] = ()

    @property
    def readonly(self) -> bool:
        return "ro" in self.options

    def to_dict(self) -> dict[str, object]:
        """The shape of an OCI runtime-spec mount entry (destination filled in by the caller)."""
        return {"type": self.type, "source": self.source, "options": list(self.options)}


_OVERLAY_FEATURES = ("index", "redirect_dir", "metacopy")


def overlay_feature_options() -> tuple[str, ...]:
    """Turn off the overlay features that tie a lower dir to one upper or change the upper's format."""
    params = "/sys/module/overlay/parameters"
    return tuple(f"{name}=off" for name in _OVERLAY_FEATURES if os.path.exists(os.path.join(params, name)))


def overlay_data(mount: Mount) -> str:
    data = ",".join(o for o in mount.options if o not in ("ro", "rw"))
    if len(data) >= _PAGE:
        raise NotImplementedFeature(f"overlay mount options longer than a page ({len(data)} bytes): too many layers")
    return data


def mount_all(mounts: list[Mount], target: str) -> None:
    """Mount the descriptions on `target` (normally exactly one)."""
    for m in mounts:
        if m.type == "bind":
            libc.mount(m.source, target, None, libc.MS_BIND | libc.MS_REC)
            if m.readonly:
                try:
                    libc.mount(None, target, None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY)
                except SystemFailure:
                    libc.umount(target, libc.MNT_DETACH)
                    raise
        elif m.type == "overlay":
            libc.mount("overlay", target, "overlay", libc.MS_RDONLY if m.readonly else 0, overlay_data(m))
        else:
            raise NotImplementedFeature(f"mount type {m.type!r}")


def unmount(target: str) -> None:
    """Unmount everything stacked on `target` (lazily if busy)."""
    while True:
        try:
            libc.umount(target, libc.UMOUNT_NOFOLLOW)
        except SystemFailure as e:
            if e.errno == 22:  # EINVAL: not a mount point (any more)
                return
            if e.errno == 16:  # EBUSY
                libc.umount(target, libc.MNT_DETACH | libc.UMOUNT_NOFOLLOW)
                continue
            raise


@contextmanager
def mounted(mounts: list[Mount], target: str) -> Iterator[str]:
    """Mount for the duration of a block, then unmount, whatever happens in the block."""
    mount_all(mounts, target)
    try:
        yield target
    finally:
        unmount(target)
