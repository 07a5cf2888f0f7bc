"""Linux capabilities for the container process: names, the five sets, and applying them.

The container init applies them in this order, after fork and before execve (as runc does):

    drop_bounding(sets.bounding)
    prctl(PR_SET_KEEPCAPS, 1)            # keep the permitted set across the uid change
    setgroups / setresgid / setresuid    # to the process user
    prctl(PR_SET_KEEPCAPS, 0)
    apply(sets)                          # capset(2) re-raises effective, then ambient

Changing from uid 0 to another uid clears the effective and ambient sets even with keepcaps;
`apply` sets them again from the (kept) permitted set.

Everything here may run after pivot_root, where the host's /proc and Python library are out of
sight: nothing is imported lazily, and the last capability number is read at import time (with
a prctl probe as the fallback).
"""

from __future__ import annotations

import ctypes
import errno
import os

from dockyard.errors import InvalidSpec, SystemFailure
from dockyard.linux import libc

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any

CAP_NAMES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

CAP_NUMBERS: dict[int, str] = {number: name for name, number in CAP_NAMES.items()}

SET_NAMES = ("bounding", "effective", "permitted", "inheritable", "ambient")

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CAP_LAST_CAP_FILE = "/proc/sys/kernel/cap_last_cap"
_PROBE_LIMIT = 63


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_CapDataPair = _CapData * 2


def _read_last_cap() -> int | None:
    try:
        with open(_CAP_LAST_CAP_FILE) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _probe_last_cap() -> int:
    """The highest capability the kernel knows, found with PR_CAPBSET_READ (EINVAL past the end)."""
    last = -1
    for cap in range(_PROBE_LIMIT + 1):
        try:
            libc.prctl(libc.PR_CAPBSET_READ, cap)
        except SystemFailure:
            break
        last = cap
    return last


_last_cap: int | None = _read_last_cap()


def last_cap() -> int:
    """The highest capability number this kernel supports (/proc/sys/kernel/cap_last_cap)."""
    global _last_cap
    if _last_cap is None:
        _last_cap = _read_last_cap()
        if _last_cap is None:
            _last_cap = _probe_last_cap()
    return _last_cap


def parse_caps(names: list[str]) -> set[int]:
    """Capability names to numbers.

    An unknown name is an error; a known capability this kernel does not have is left out, as
    runc does (a newer profile must still run on an older kernel).
    """
    if not isinstance(names, list):
        raise InvalidSpec(f"capabilities must be a list of names, not {type(names).__name__}: {names!r}")
    top = last_cap()
    caps: set[int] = set()
    for name in names:
        if not isinstance(name, str) or name not in CAP_NAMES:
            raise InvalidSpec(f"unknown capability {name!r} (expected a name such as CAP_CHOWN)")
        number = CAP_NAMES[name]
        if number <= top:
            caps.add(number)
    return caps


def names_of(caps: set[int]) -> list[str]:
    """Numbers back to names, in numeric order (for messages and tests)."""
    return [CAP_NUMBERS.get(cap, f"cap{cap}") for cap in sorted(caps)]


def mask_of(caps: set[int]) -> int:
    mask = 0
    for cap in caps:
        mask |= 1 << cap
    return mask


def caps_of(mask: int) -> set[int]:
    return {bit for bit in range(64) if mask >> bit & 1}


class CapabilitySets:
    """The five capability sets of a process. (A plain class: dataclasses are slow to import.)"""

    def __init__(self, bounding: set[int] | None = None, effective: set[int] | None = None,
                 permitted: set[int] | None = None, inheritable: set[int] | None = None,
                 ambient: set[int] | None = None) -> None:
        self.bounding = set(bounding or ())
        self.effective = set(effective or ())
        self.permitted = set(permitted or ())
        self.inheritable = set(inheritable or ())
        self.ambient = set(ambient or ())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CapabilitySets):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in SET_NAMES)

    def __repr__(self) -> str:
        return "CapabilitySets(" + ", ".join(f"{n}={sorted(getattr(self, n))}" for n in SET_NAMES) + ")"

    @classmethod
    def from_spec(cls, caps: dict[str, Any] | None) -> CapabilitySets:
        """The OCI `process.capabilities` object; None (or a missing set) means empty."""
        if caps is None:
            return cls()
        if not isinstance(caps, dict):
            raise InvalidSpec(f"process.capabilities must be an object, not {type(caps).__name__}")
        parsed: dict[str, set[int]] = {}
        for set_name in SET_NAMES:
            names = caps.get(set_name)
            try:
                parsed[set_name] = parse_caps(names) if names is not None else set()
            except InvalidSpec as e:
                raise InvalidSpec(f"process.capabilities.{set_name}: {e}") from None
        sets = cls(**parsed)
        sets.validate()
        return sets

    def validate(self) -> None:
        """Reject combinations the kernel would refuse with a bare EPERM, naming the culprits."""
        extra = self.effective - self.permitted
        if extra:
            raise InvalidSpec(f"process.capabilities: effective {names_of(extra)} not in the permitted set")
        extra = self.ambient - (self.permitted & self.inheritable)
        if extra:
            raise InvalidSpec(f"process.capabilities: ambient {names_of(extra)} must be both permitted and inheritable")


def _in_bounding(cap: int) -> bool:
    return libc.prctl(libc.PR_CAPBSET_READ, cap) == 1


def require_available(sets: CapabilitySets) -> None:
    """Fail early, naming them, if the sets ask for capabilities this process cannot grant
    (outside its own bounding set): the kernel would refuse capset with a bare EPERM later."""
    wanted = sets.bounding | sets.effective | sets.permitted | sets.inheritable | sets.ambient
    missing = {cap for cap in wanted if not _in_bounding(cap)}
    if missing:
        raise SystemFailure(f"process.capabilities: {names_of(missing)} not available to the runtime "
                            "(outside its bounding set)", 1)


def drop_bounding(keep: set[int]) -> None:
    """Drop every capability not in `keep` from the bounding set (needs CAP_SETPCAP).

    Capabilities already gone are not dropped again, so a process with nothing to drop does
    not need CAP_SETPCAP.
    """
    for cap in range(last_cap() + 1):
        if cap in keep or not _in_bounding(cap):
            continue
        try:
            libc.prctl(libc.PR_CAPBSET_DROP, cap)
        except SystemFailure as e:
            raise SystemFailure(f"dropping {CAP_NUMBERS.get(cap, cap)} from the bounding set: {e}", e.errno) from None


def _capget() -> tuple[int, int, int]:
    """(effective, permitted, inheritable) of this thread, for error messages."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = _CapDataPair()
    if libc.libc().syscall(libc.SYS_capget, ctypes.byref(header), ctypes.byref(data)) != 0:
        return (-1, -1, -1)
    low, high = data[0], data[1]
    return (
        low.effective | high.effective << 32,
        low.permitted | high.permitted << 32,
        low.inheritable | high.inheritable << 32,
    )


def _capset(sets: CapabilitySets) -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = _CapDataPair()
    for name in ("effective", "permitted", "inheritable"):
        mask = mask_of(getattr(sets, name))
        setattr(data[0], name, mask & 0xFFFFFFFF)
        setattr(data[1], name, mask >> 32 & 0xFFFFFFFF)
    if libc.libc().syscall(libc.SYS_capset, ctypes.byref(header), ctypes.byref(data)) != 0:
        err = ctypes.get_errno()
        eff, prm, inh = _capget()
        raise SystemFailure(
            f"capset(effective {mask_of(sets.effective):#x}, permitted {mask_of(sets.permitted):#x}, "
            f"inheritable {mask_of(sets.inheritable):#x}): {os.strerror(err)} "
            f"(the process has effective {eff:#x}, permitted {prm:#x}, inheritable {inh:#x})",
            err,
        )


def _set_ambient(ambient: set[int]) -> None:
    try:
        libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    except SystemFailure as e:
        # kernels before 4.3 have no ambient set: fine unless the spec asks for one
        if e.errno == errno.EINVAL and not ambient:
            return
        raise SystemFailure(f"clearing the ambient capability set: {e}", e.errno) from None
    for cap in sorted(ambient):
        try:
            libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_RAISE, cap)
        except SystemFailure as e:
            raise SystemFailure(f"raising ambient capability {CAP_NUMBERS.get(cap, cap)}: {e}", e.errno) from None


def apply(sets: CapabilitySets) -> None:
    """Set effective, permitted and inheritable with capset(2), then make the ambient set exact.

    The bounding set is not touched: `drop_bounding` runs first, before the user changes.
    """
    _capset(sets)
    _set_ambient(sets.ambient)


def current(pid: int | str = "self") -> dict[str, int]:
    """CapInh/CapPrm/CapEff/CapBnd/CapAmb of a process, as integer masks, from /proc/<pid>/status."""
    masks: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                masks[key] = int(value.strip(), 16)
    return masks
