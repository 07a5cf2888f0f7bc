"""cgroup v2 device control: a hand-assembled BPF_PROG_TYPE_CGROUP_DEVICE program.

cgroup v2 has no devices.allow; the kernel instead runs an eBPF program attached to the
cgroup for each device access. ``assemble`` turns an emulated rule set (``devices.Emulator``)
into that program, with the layout of runc's and crun's filters:

    r2 = ctx->access_type & 0xffff      device type (BPF_DEVCG_DEV_BLOCK / _CHAR)
    r3 = ctx->access_type >> 16         requested access (BPF_DEVCG_ACC_*)
    r4 = ctx->major; r5 = ctx->minor
    per exception: if (type, access, major, minor) match -> return allow/deny
    otherwise return the default

``attach`` loads it with bpf(BPF_PROG_LOAD) and attaches it to the cgroup directory with
BPF_F_ALLOW_MULTI, replacing the one program a previous ``set`` left (BPF_F_REPLACE), or
attaching and then detaching older ones. Needs CAP_SYS_ADMIN (or CAP_BPF) and a cgroup2 dir.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import resource
import struct

from dockyard.cgroups.devices import MKNOD, READ, WRITE, DeviceRule, Emulator
from dockyard.errors import InvalidSpec, SystemFailure
from dockyard.linux import libc

LICENSE = b"Apache"

# bpf(2) commands, program and attach types, flags (include/uapi/linux/bpf.h)
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 1 << 1
BPF_F_REPLACE = 1 << 2

BPF_DEVCG_ACC_MKNOD, BPF_DEVCG_ACC_READ, BPF_DEVCG_ACC_WRITE = 1, 2, 4
BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR = 1, 2

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}

# instruction opcodes used here (class | op | source)
_LDX_MEM_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_ALU32_AND_K = 0x54
_ALU32_RSH_K = 0x74
_ALU32_MOV_K = 0xB4
_ALU32_MOV_X = 0xBC
_JMP_JNE_K = 0x55
_JMP_JNE_X = 0x5D
_JMP_EXIT = 0x95

INSN_SIZE = 8
R0, R1, R2, R3, R4, R5 = range(6)


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """struct bpf_insn, little-endian: code, dst:4|src:4, s16 off, s32 imm."""
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _bpf_access(bits: int) -> int:
    out = 0
    if bits & READ:
        out |= BPF_DEVCG_ACC_READ
    if bits & WRITE:
        out |= BPF_DEVCG_ACC_WRITE
    if bits & MKNOD:
        out |= BPF_DEVCG_ACC_MKNOD
    return out


def _rule_block(rule: DeviceRule) -> list[tuple[int, int, int, int, int, bool]]:
    """One exception as (code, dst, src, off, imm, jumps_to_next_block) tuples."""
    dev_type = BPF_DEVCG_DEV_BLOCK if rule.type == "b" else BPF_DEVCG_DEV_CHAR
    block = [(_JMP_JNE_K, R2, 0, 0, dev_type, True)]
    access = _bpf_access(rule.access)
    if access != BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD:
        # match only when every requested access bit is in the rule: (r3 & access) == r3
        block += [
            (_ALU32_MOV_X, R1, R3, 0, 0, False),
            (_ALU32_AND_K, R1, 0, 0, access, False),
            (_JMP_JNE_X, R1, R3, 0, 0, True),
        ]
    for reg, number in ((R4, rule.major), (R5, rule.minor)):
        if number >= 0:
            if number > 2**31 - 1:
                raise InvalidSpec(f"device number {number} in rule {rule.cgroup_string()!r} is too large")
            block.append((_JMP_JNE_K, reg, 0, 0, number, True))
    block += [(_ALU32_MOV_K, R0, 0, 0, int(rule.allow), False), (_JMP_EXIT, 0, 0, 0, 0, False)]
    return block


def assemble(emulator: Emulator) -> bytes:
    """The device filter program for an emulated rule set."""
    prologue = [
        insn(_LDX_MEM_W, R2, R1, 0),
        insn(_ALU32_AND_K, R2, imm=0xFFFF),
        insn(_LDX_MEM_W, R3, R1, 0),
        insn(_ALU32_RSH_K, R3, imm=16),
        insn(_LDX_MEM_W, R4, R1, 4),
        insn(_LDX_MEM_W, R5, R1, 8),
    ]
    body: list[bytes] = []
    for rule in emulator.exceptions():
        block = _rule_block(rule)
        for i, (code, dst, src, _, imm, to_next) in enumerate(block):
            # a jump's offset counts instructions after itself: land on the next block's first
            off = len(block) - i - 1 if to_next else 0
            body.append(insn(code, dst, src, off, imm))
    epilogue = [insn(_ALU32_MOV_K, R0, imm=int(emulator.default_allow)), insn(_JMP_EXIT)]
    return b"".join(prologue + body + epilogue)


# --- bpf(2) ---


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
    ]


class _AttachAttr(ctypes.Structure):
    _fields_ = [
        ("target_fd", ctypes.c_uint32),
        ("attach_bpf_fd", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("replace_bpf_fd", ctypes.c_uint32),
    ]


class _QueryAttr(ctypes.Structure):
    # Complete up to `revision`: kernels 6.17+ write it whatever size is passed.
    _fields_ = [
        ("target_fd", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("query_flags", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("prog_ids", ctypes.c_uint64),
        ("prog_cnt", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("prog_attach_flags", ctypes.c_uint64),
        ("link_ids", ctypes.c_uint64),
        ("link_attach_flags", ctypes.c_uint64),
        ("revision", ctypes.c_uint64),
    ]


class _GetFdAttr(ctypes.Structure):
    _fields_ = [("prog_id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


def _sys_bpf() -> int:
    machine = os.uname().machine
    if machine not in _SYS_BPF:
        raise SystemFailure(f"bpf(2) syscall number unknown for {machine}")
    return _SYS_BPF[machine]


def _bpf(cmd: int, attr: ctypes.Structure, what: str) -> int:
    for _ in range(30):  # the verifier returns EAGAIN when a signal interrupts it
        ctypes.set_errno(0)
        ret = libc.syscall_raw(_sys_bpf(), ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        if not (err == errno.EAGAIN and cmd == BPF_PROG_LOAD):
            raise SystemFailure(f"bpf({what}): {os.strerror(err)}", err)
    raise SystemFailure(f"bpf({what}): interrupted too often", errno.EAGAIN)


def _fd_above_zero(fd: int) -> int:
    """bpf(2) reads fd 0 in some attributes as "none": keep program fds off it."""
    if fd != 0:
        return fd
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 1)
    os.close(fd)
    return new


def _load_once(program: bytes, log: ctypes.Array[ctypes.c_char] | None = None) -> int:
    code = ctypes.create_string_buffer(program, len(program))
    lic = ctypes.create_string_buffer(LICENSE)
    attr = _ProgLoadAttr(
        prog_type=BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt=len(program) // INSN_SIZE,
        insns=ctypes.addressof(code),
        license=ctypes.addressof(lic),
    )
    if log is not None:
        attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
    return _fd_above_zero(_bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD of the device filter"))


def _load_with_memlock(program: bytes) -> int:
    """Kernels before 5.11 charge programs to RLIMIT_MEMLOCK: lift it for the load only, so
    that a container started from this process later does not inherit the change."""
    old = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        return _load_once(program)
    try:
        return _load_once(program)
    finally:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, old)


def load(program: bytes) -> int:
    """BPF_PROG_LOAD; on rejection, the verifier's log is in the error."""
    try:
        return _load_once(program)
    except SystemFailure as e:
        if e.errno != errno.EPERM:
            first = e
        else:
            try:
                return _load_with_memlock(program)
            except SystemFailure as again:
                first = again
    log = ctypes.create_string_buffer(1 << 16)
    try:
        return _load_once(program, log)
    except SystemFailure:
        tail = log.value.decode(errors="replace").strip().splitlines()[-8:]  # the verdict is last
        raise SystemFailure(f"{first}; verifier: {' | '.join(tail) or 'no log'}", first.errno) from None


def attached_programs(cgroup_fd: int) -> list[int]:
    """Fds of the device programs attached to the cgroup (the caller closes them)."""
    ids = (ctypes.c_uint32 * 64)()
    attr = _QueryAttr(target_fd=cgroup_fd, attach_type=BPF_CGROUP_DEVICE, prog_ids=ctypes.addressof(ids), prog_cnt=64)
    _bpf(BPF_PROG_QUERY, attr, "BPF_PROG_QUERY of device programs")
    fds = []
    try:
        for prog_id in ids[: attr.prog_cnt]:
            try:
                fds.append(_fd_above_zero(_bpf(BPF_PROG_GET_FD_BY_ID, _GetFdAttr(prog_id=prog_id), "BPF_PROG_GET_FD_BY_ID")))
            except SystemFailure as e:
                if e.errno not in (errno.EPERM, errno.EACCES):  # an LSM may hide others' programs
                    raise
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def _attach(cgroup_fd: int, prog_fd: int, flags: int, replace_fd: int = 0) -> None:
    attr = _AttachAttr(target_fd=cgroup_fd, attach_bpf_fd=prog_fd, attach_type=BPF_CGROUP_DEVICE,
                       attach_flags=flags, replace_bpf_fd=replace_fd)
    _bpf(BPF_PROG_ATTACH, attr, "BPF_PROG_ATTACH of the device filter")


def _detach(cgroup_fd: int, prog_fd: int) -> None:
    attr = _AttachAttr(target_fd=cgroup_fd, attach_bpf_fd=prog_fd, attach_type=BPF_CGROUP_DEVICE)
    _bpf(BPF_PROG_DETACH, attr, "BPF_PROG_DETACH of an old device filter")


def attach(directory: str, program: bytes) -> None:
    """Make `program` the cgroup's only device filter (this process keeps no reference)."""
    try:
        cgroup_fd = os.open(directory, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise SystemFailure(f"opening cgroup {directory} for its device filter: {e.strerror}", e.errno or 0) from None
    prog_fd = -1
    old: list[int] = []
    try:
        old = attached_programs(cgroup_fd)
        prog_fd = load(program)
        if len(old) == 1:
            try:
                _attach(cgroup_fd, prog_fd, BPF_F_ALLOW_MULTI | BPF_F_REPLACE, old[0])
                return
            except SystemFailure as e:
                if e.errno != errno.EINVAL:  # EINVAL: a kernel before 5.6, without BPF_F_REPLACE
                    raise
        _attach(cgroup_fd, prog_fd, BPF_F_ALLOW_MULTI)
        for fd in old:
            _detach(cgroup_fd, fd)
    except SystemFailure as e:
        raise SystemFailure(f"device filter for cgroup {directory}: {e}", e.errno) from None
    finally:
        for fd in [*old, prog_fd]:
            if fd >= 0:
                os.close(fd)
        os.close(cgroup_fd)
