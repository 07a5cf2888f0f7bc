"""Translating OCI mount options (fstab words) into mount(2) flags and data."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class MountOptions:
    flags: int = 0
    propagation: list[int] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    copy_up: bool = False  # "tmpcopyup": fill a new tmpfs with what the image had there

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
