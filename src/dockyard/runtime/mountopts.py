"""Translating OCI mount options (fstab words) into mount(2) flags and data."""

from __future__ import annotations

from dockyard.errors import NotImplementedFeature
from dockyard.linux import libc

# option -> (clear?, flag)
_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, libc.MS_SYNCHRONOUS),
    "atime": (True, libc.MS_NOATIME),
    "bind": (False, libc.MS_BIND),
    "defaults": (False, 0),
    "dev": (True, libc.MS_NODEV),
    "diratime": (True, libc.MS_NODIRATIME),
    "dirsync": (False, libc.MS_DIRSYNC),
    "exec": (True, libc.MS_NOEXEC),
    "mand": (False, libc.MS_MANDLOCK),
    "noatime": (False, libc.MS_NOATIME),
    "nodev": (False, libc.MS_NODEV),
    "nodiratime": (False, libc.MS_NODIRATIME),
    "noexec": (False, libc.MS_NOEXEC),
    "nomand": (True, libc.MS_MANDLOCK),
    "norelatime": (True, libc.MS_RELATIME),
    "nostrictatime": (True, libc.MS_STRICTATIME),
    "nosuid": (False, libc.MS_NOSUID),
    "nosymfollow": (False, libc.MS_NOSYMFOLLOW),
    "rbind": (False, libc.MS_BIND | libc.MS_REC),
    "relatime": (False, libc.MS_RELATIME),
    "remount": (False, libc.MS_REMOUNT),
    "ro": (False, libc.MS_RDONLY),
    "rw": (True, libc.MS_RDONLY),
    "strictatime": (False, libc.MS_STRICTATIME),
    "suid": (True, libc.MS_NOSUID),
    "sync": (False, libc.MS_SYNCHRONOUS),
    "symfollow": (True, libc.MS_NOSYMFOLLOW),
    "lazytime": (False, libc.MS_LAZYTIME),
    "nolazytime": (True, libc.MS_LAZYTIME),
}

_PROPAGATION: dict[str, int] = {
    "private": libc.MS_PRIVATE,
    "rprivate": libc.MS_PRIVATE | libc.MS_REC,
    "shared": libc.MS_SHARED,
    "rshared": libc.MS_SHARED | libc.MS_REC,
    "slave": libc.MS_SLAVE,
    "rslave": libc.MS_SLAVE | libc.MS_REC,
    "unbindable": libc.MS_UNBINDABLE,
    "runbindable": libc.MS_UNBINDABLE | libc.MS_REC,
}

_UNSUPPORTED = {"idmap", "ridmap", "rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec",
                "rnoatime", "ratime", "rnodiratime", "rdiratime", "rrelatime", "rnorelatime",
                "rstrictatime", "rnostrictatime", "rnosymfollow", "rsymfollow"}


class MountOptions:
    """What a mount's option strings mean. (A plain class: dataclasses are slow to import, and
    every `create` parses mount options.)"""

    __slots__ = ("flags", "propagation", "data", "copy_up")

    def __init__(self, flags: int = 0, propagation: list[int] | None = None, data: list[str] | None = None,
                 copy_up: bool = False) -> None:
        self.flags = flags
        self.propagation = propagation if propagation is not None else []
        self.data = data if data is not None else []
        self.copy_up = copy_up  # "tmpcopyup": fill a new tmpfs with what the image had there

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MountOptions):
            return NotImplemented
        return (self.flags, self.propagation, self.data, self.copy_up) == \
            (other.flags, other.propagation, other.data, other.copy_up)

    def __repr__(self) -> str:
        return (f"MountOptions(flags={self.flags:#x}, propagation={self.propagation}, data={self.data}, "
                f"copy_up={self.copy_up})")

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & libc.MS_BIND)

    @property
    def data_string(self) -> str | None:
        return ",".join(self.data) if self.data else None


def parse(options: list[str]) -> MountOptions:
    result = MountOptions()
    for opt in options:
        if opt in _FLAGS:
            clear, flag = _FLAGS[opt]
            if clear:
                result.flags &= ~flag
            else:
                result.flags |= flag
        elif opt in _PROPAGATION:
            result.propagation.append(_PROPAGATION[opt])
        elif opt == "tmpcopyup":
            result.copy_up = True
        elif opt in _UNSUPPORTED:
            raise NotImplementedFeature(f"mount option {opt!r}")
        else:
            result.data.append(opt)
    return result


def rootfs_propagation(value: str | None) -> int:
    if not value:
        return libc.MS_SLAVE | libc.MS_REC
    return _PROPAGATION[value]
