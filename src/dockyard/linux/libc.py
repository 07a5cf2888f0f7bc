"""Thin ctypes bindings for the Linux syscalls the standard library lacks.

Every function raises ``SystemFailure`` (with ``errno`` set) when the call fails, and names
what it was doing. Nothing here keeps state; callers decide the order of operations.
"""

from __future__ import annotations

import ctypes
import os

from dockyard.errors import SystemFailure

_libc = ctypes.CDLL(None, use_errno=True)

# clone(2) / unshare(2) / setns(2) flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

# umount2(2) flags
MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# prctl(2) options
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# syscall numbers (x86_64)
SYS_pivot_root = 155
SYS_setns = 308
SYS_capget = 125
SYS_capset = 126
SYS_close_range = 436
SYS_memfd_create = 319
SYS_pidfd_open = 434
SYS_keyctl = 250
SYS_clone3 = 435
SYS_openat2 = 437

# openat2(2) resolve flags
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

CLOSE_RANGE_CLOEXEC = 1 << 2

_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long


CLONE_INTO_CGROUP = 0x200000000
SIGCHLD = 17


class _CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
        "set_tid", "set_tid_size", "cgroup")]


def fork_into_cgroup(cgroup_fd: int) -> int:
    """os.fork(), but the child is born in the cgroup v2 directory `cgroup_fd` (clone3 with
    CLONE_INTO_CGROUP): no later cgroup.procs write, which takes the kernel's global threadgroup
    lock. Python's fork hooks run as for os.fork (PyOS_BeforeFork / AfterFork_*). The syscall is
    made with the GIL held (PyDLL), so the child's copy of the GIL is consistent. Only for a
    single-threaded caller, like everything forked by the runtime. Raises SystemFailure
    (ENOSYS, E2BIG or EINVAL on kernels before 5.7, EBUSY/EOPNOTSUPP for unusable cgroups)."""
    args = _CloneArgs(flags=CLONE_INTO_CGROUP, exit_signal=SIGCHLD, cgroup=cgroup_fd)
    syscall = _pylibc().syscall
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = syscall(SYS_clone3, ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise SystemFailure(f"clone3 into a cgroup: {os.strerror(err)}", err)
    return pid


_pylibc_handle: ctypes.PyDLL | None = None


def _pylibc() -> ctypes.PyDLL:
    """libc with the GIL kept across calls (for clone3: the child must not find it released)."""
    global _pylibc_handle
    if _pylibc_handle is None:
        _pylibc_handle = ctypes.PyDLL(None, use_errno=True)
        _pylibc_handle.syscall.restype = ctypes.c_long
    return _pylibc_handle


def _fail(what: str) -> SystemFailure:
    err = ctypes.get_errno()
    return SystemFailure(f"{what}: {os.strerror(err)}", err)


def _b(value: str | bytes | None) -> bytes | None:
    if value is None:
        return None
    return value.encode() if isinstance(value, str) else value


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    if _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise _fail(f"mount {source or fstype} on {target} (type {fstype}, flags {flags:#x}, data {data!r})")


def umount(target: str, flags: int = 0) -> None:
    if _libc.umount2(_b(target), flags) != 0:
        raise _fail(f"umount {target}")


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        raise _fail(f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    if _libc.syscall(SYS_setns, ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
        raise _fail(f"setns(fd {fd}, type {nstype:#x})")


def pivot_root(new_root: str, put_old: str) -> None:
    if _libc.syscall(SYS_pivot_root, _b(new_root), _b(put_old)) != 0:
        raise _fail(f"pivot_root({new_root}, {put_old})")


def sethostname(name: str) -> None:
    raw = name.encode()
    if _libc.sethostname(raw, len(raw)) != 0:
        raise _fail(f"sethostname({name})")


def setdomainname(name: str) -> None:
    raw = name.encode()
    if _libc.setdomainname(raw, len(raw)) != 0:
        raise _fail(f"setdomainname({name})")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    ret = _libc.prctl(option, arg2, arg3, arg4, arg5)
    if ret < 0:
        raise _fail(f"prctl({option})")
    return int(ret)


def close_range_cloexec(first: int) -> None:
    """Mark every descriptor >= first close-on-exec (so nothing leaks into the container)."""
    if _libc.syscall(SYS_close_range, ctypes.c_uint(first), ctypes.c_uint(0xFFFFFFFF), ctypes.c_uint(CLOSE_RANGE_CLOEXEC)) != 0:
        raise _fail("close_range")


def memfd_create(name: str, flags: int = 0) -> int:
    fd = _libc.syscall(SYS_memfd_create, _b(name), ctypes.c_uint(flags))
    if fd < 0:
        raise _fail("memfd_create")
    return int(fd)


def pidfd_open(pid: int) -> int:
    fd = _libc.syscall(SYS_pidfd_open, ctypes.c_int(pid), ctypes.c_uint(0))
    if fd < 0:
        raise _fail(f"pidfd_open({pid})")
    return int(fd)


def join_session_keyring(name: str | None) -> None:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING): give the container its own session keyring."""
    KEYCTL_JOIN_SESSION_KEYRING = 1
    ret = _libc.syscall(SYS_keyctl, ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING), _b(name))
    if ret < 0:
        err = ctypes.get_errno()
        # Kernels or seccomp profiles without keyring support: nothing to isolate.
        if err in (38, 1):  # ENOSYS, EPERM
            return
        raise _fail("keyctl(JOIN_SESSION_KEYRING)")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): open `path` relative to `dirfd` with the RESOLVE_* rules (e.g. RESOLVE_IN_ROOT:
    `..` and absolute symlinks stay inside dirfd, as if it were the root)."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    fd = _libc.syscall(SYS_openat2, ctypes.c_int(dirfd), _b(path), ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise SystemFailure(f"open {path}: {os.strerror(err)}", err)
    return int(fd)


def syscall_raw(number: int, *args: object) -> int:
    return int(_libc.syscall(number, *args))


def libc() -> ctypes.CDLL:
    return _libc
