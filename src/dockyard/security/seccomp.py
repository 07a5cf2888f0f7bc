"""Seccomp: the OCI `linux.seccomp` object as a libseccomp filter.

The runtime compiles the filter in its own process, before forking (so that a bad profile is
reported before anything starts, and so that libseccomp is loaded while the host's libraries are
in sight); fork copies the filter's memory, and the container init calls `load()` just before
execve. Loading without no_new_privs needs CAP_SYS_ADMIN, so, as in runc, the init loads the
filter before dropping privileges when process.noNewPrivileges is false, and as the very last
step (after `set_no_new_privs()`) when it is true. The filter never sets no_new_privs itself.

How the spec maps onto libseccomp follows runc (libcontainer/seccomp):
- syscall names libseccomp does not know are skipped (an older libseccomp must still run a
  newer profile); they are listed in `SeccompFilter.skipped`;
- a rule whose action equals the default action is skipped (libseccomp refuses it);
- conditions on distinct arguments form one rule (AND); when two conditions test the same
  argument, each condition becomes a rule of its own (OR), since libseccomp refuses the AND;
- errnoRet defaults to EPERM for SCMP_ACT_ERRNO and SCMP_ACT_TRACE, and is an error for any
  other action (the runtime-spec says the runtime MUST fail);
- without a `flags` key, SECCOMP_FILTER_FLAG_SPEC_ALLOW is set when supported (runc's default);
- a spec with neither a defaultAction nor syscalls means no filter (`SeccompFilter.enabled`
  is False and `load()` does nothing).

Not implemented: SCMP_ACT_NOTIFY and listenerPath (a seccomp agent), and runc's BPF patch that
answers ENOSYS, instead of the default action, for syscalls newer than the profile.
"""

from __future__ import annotations

import ctypes
import errno
import os

from dockyard.errors import InvalidSpec, NotImplementedFeature, SystemFailure
from dockyard.linux import libc

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any

LIBSECCOMP = "libseccomp.so.2"

# seccomp.h actions (SCMP_ACT_ERRNO and SCMP_ACT_TRACE carry a 16-bit value in the low bits)
_ACT_KILL_PROCESS = 0x80000000
_ACT_KILL_THREAD = 0x00000000
_ACT_TRAP = 0x00030000
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000
_ACT_LOG = 0x7FFC0000
_ACT_ALLOW = 0x7FFF0000

ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": _ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": _ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": _ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": _ACT_TRAP,
    "SCMP_ACT_ERRNO": _ACT_ERRNO,
    "SCMP_ACT_TRACE": _ACT_TRACE,
    "SCMP_ACT_ALLOW": _ACT_ALLOW,
    "SCMP_ACT_LOG": _ACT_LOG,
}
_ACTIONS_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
_ACTIONS_NOT_IMPLEMENTED = ("SCMP_ACT_NOTIFY",)
# the libseccomp API level (seccomp_api_get) each action needs from the kernel
_ACTION_API_LEVEL = {"SCMP_ACT_KILL_PROCESS": 3, "SCMP_ACT_LOG": 3}

OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# OCI architecture names to libseccomp's (seccomp_arch_resolve_name)
ARCHES: dict[str, str] = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc",
    "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64",
}

# seccomp.h filter attributes
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8
_ATTR_API_SYSRAWRC = 9

FLAG_TSYNC = "SECCOMP_FILTER_FLAG_TSYNC"
FLAG_LOG = "SECCOMP_FILTER_FLAG_LOG"
FLAG_SPEC_ALLOW = "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
FLAG_WAIT_KILLABLE_RECV = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
# flag -> (filter attribute, libseccomp API level the kernel must offer)
FLAGS: dict[str, tuple[int, int]] = {
    FLAG_TSYNC: (_ATTR_CTL_TSYNC, 2),
    FLAG_SPEC_ALLOW: (_ATTR_CTL_SSB, 4),
    FLAG_LOG: (_ATTR_CTL_LOG, 3),
}

_MAX_ARGS = 6
_MAX_U64 = (1 << 64) - 1
_MAX_RET = 0xFFFF
# past this many rules, a binary tree of syscalls beats a linear list (runc uses the same cut)
_OPTIMIZE_OVER = 32
_NR_SCMP_ERROR = -1


class ScmpArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class _ScmpVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_lib: ctypes.CDLL | None = None
_lib_error: str | None = None


def _bind(lib: ctypes.CDLL) -> None:
    ctx = ctypes.c_void_p
    signatures: dict[str, tuple[list[Any], Any]] = {
        "seccomp_init": ([ctypes.c_uint32], ctx),
        "seccomp_release": ([ctx], None),
        "seccomp_load": ([ctx], ctypes.c_int),
        "seccomp_arch_resolve_name": ([ctypes.c_char_p], ctypes.c_uint32),
        "seccomp_arch_native": ([], ctypes.c_uint32),
        "seccomp_arch_add": ([ctx, ctypes.c_uint32], ctypes.c_int),
        "seccomp_attr_set": ([ctx, ctypes.c_int, ctypes.c_uint32], ctypes.c_int),
        "seccomp_syscall_resolve_name": ([ctypes.c_char_p], ctypes.c_int),
        "seccomp_rule_add_array": (
            [ctx, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ScmpArgCmp)],
            ctypes.c_int,
        ),
        "seccomp_api_get": ([], ctypes.c_uint),
        "seccomp_version": ([], ctypes.POINTER(_ScmpVersion)),
        "seccomp_export_pfc": ([ctx, ctypes.c_int], ctypes.c_int),
        "seccomp_export_bpf": ([ctx, ctypes.c_int], ctypes.c_int),
    }
    for name, (argtypes, restype) in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = restype


def _seccomp() -> ctypes.CDLL:
    """libseccomp, loaded once; NotImplementedFeature when the system has none."""
    global _lib, _lib_error
    if _lib is None:
        if _lib_error is not None:
            raise NotImplementedFeature(f"seccomp ({_lib_error})")
        try:
            lib = ctypes.CDLL(LIBSECCOMP, use_errno=True)
            _bind(lib)
        except (OSError, AttributeError) as e:
            _lib_error = f"{LIBSECCOMP} cannot be loaded: {e}"
            raise NotImplementedFeature(f"seccomp ({_lib_error})") from None
        _lib = lib
    return _lib


def available() -> bool:
    try:
        _seccomp()
    except NotImplementedFeature:
        return False
    return True


def version() -> tuple[int, int, int]:
    """The libseccomp version, for `runtime features` annotations."""
    v = _seccomp().seccomp_version().contents
    return (int(v.major), int(v.minor), int(v.micro))


def api_level() -> int:
    """What the kernel and libseccomp support together (seccomp.h lists the levels)."""
    return int(_seccomp().seccomp_api_get())


def _strerror(ret: int) -> str:
    return os.strerror(-ret) if ret < 0 else f"return code {ret}"


class SeccompFilter:
    """A compiled, not yet loaded filter: a libseccomp context owned by this object."""

    def __init__(self, ctx: int | None, *, default_action: str = "", skipped: list[str] | None = None,
                 rules: int = 0) -> None:
        self._ctx = ctx
        self.default_action = default_action
        self.skipped: list[str] = skipped or []
        self.rules = rules
        self.flag_bits = 0  # the SECCOMP_FILTER_FLAG_* bits libseccomp passes to the kernel

    @property
    def enabled(self) -> bool:
        """False for a spec that asks for no filter, and after release()."""
        return self._ctx is not None

    def load(self) -> None:
        """Install the filter in the calling process (seccomp_load); lasts across execve."""
        if self._ctx is None:
            return
        ret = _seccomp().seccomp_load(self._ctx)
        if ret != 0:
            raise SystemFailure(
                f"loading the seccomp filter (default action {self.default_action}, {self.rules} rules): "
                f"{_strerror(ret)}"
                + (" (without no_new_privs this needs CAP_SYS_ADMIN)" if ret == -errno.EACCES else ""),
                -ret,
            )

    def release(self) -> None:
        """Free the libseccomp context; a loaded filter stays in force."""
        if self._ctx is not None:
            _seccomp().seccomp_release(self._ctx)
            self._ctx = None

    def export_pfc(self) -> str:
        """libseccomp's human-readable listing of the filter (for debugging and tests)."""
        return self._export("seccomp_export_pfc").decode()

    def export_bpf(self) -> bytes:
        """The BPF program the kernel would receive."""
        return self._export("seccomp_export_bpf")

    def _export(self, function: str) -> bytes:
        if self._ctx is None:
            raise SystemFailure("the seccomp filter is not there to export (no filter, or released)")
        import tempfile

        with tempfile.TemporaryFile() as f:
            ret = getattr(_seccomp(), function)(self._ctx, f.fileno())
            if ret != 0:
                raise SystemFailure(f"{function}: {_strerror(ret)}", -ret)
            f.seek(0)
            return f.read()

    def __enter__(self) -> SeccompFilter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass


# -- validation: the spec to plain values ------------------------------------------------------


def _where(index: int | None, name: str = "") -> str:
    base = "linux.seccomp"
    if index is None:
        return base
    return f"{base}.syscalls[{index}]" + (f" ({name})" if name else "")


def _check_uint(value: Any, limit: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise InvalidSpec(f"{what} must be an integer from 0 to {limit}, not {value!r}")
    return value


def _action(name: Any, errno_ret: Any, where: str) -> int:
    """An action name (and its errnoRet) to the libseccomp action value."""
    if name in _ACTIONS_NOT_IMPLEMENTED:
        raise NotImplementedFeature(f"seccomp action {name} ({where}): no seccomp agent support")
    if not isinstance(name, str) or name not in ACTIONS:
        raise InvalidSpec(f"{where}: unknown seccomp action {name!r} (known: {', '.join(sorted(ACTIONS))})")
    value = ACTIONS[name]
    if name in _ACTIONS_WITH_ERRNO:
        ret = errno.EPERM if errno_ret is None else _check_uint(errno_ret, _MAX_RET, f"{where}: errnoRet")
        return value | ret
    if errno_ret is not None:
        raise InvalidSpec(f"{where}: errnoRet {errno_ret!r} given for {name}, which returns no errno")
    return value


def _conditions(args: Any, where: str) -> list[tuple[int, int, int, int]]:
    """args[] to (index, operator, value, valueTwo) tuples."""
    if args is None:
        return []
    if not isinstance(args, list):
        raise InvalidSpec(f"{where}: args must be a list")
    out = []
    for position, arg in enumerate(args):
        what = f"{where}: args[{position}]"
        if not isinstance(arg, dict):
            raise InvalidSpec(f"{what} must be an object")
        op = arg.get("op")
        if not isinstance(op, str) or op not in OPERATORS:
            raise InvalidSpec(f"{what}: unknown operator {op!r} (known: {', '.join(sorted(OPERATORS))})")
        index = _check_uint(arg.get("index"), _MAX_ARGS - 1, f"{what}.index")
        value = _check_uint(arg.get("value", 0), _MAX_U64, f"{what}.value")
        value_two = _check_uint(arg.get("valueTwo", 0), _MAX_U64, f"{what}.valueTwo")
        out.append((index, OPERATORS[op], value, value_two))
    return out


def _names(names: Any, where: str) -> list[str]:
    if not isinstance(names, list) or not names:
        raise InvalidSpec(f"{where}: names must be a non-empty list of syscall names")
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidSpec(f"{where}: {name!r} is not a syscall name")
    return names


def _flags(spec: dict[str, Any]) -> list[str]:
    flags = spec.get("flags")
    if flags is None:
        # runc's default: let the container opt out of the speculative store bypass mitigation
        return [FLAG_SPEC_ALLOW] if api_level() >= FLAGS[FLAG_SPEC_ALLOW][1] else []
    if not isinstance(flags, list):
        raise InvalidSpec("linux.seccomp.flags must be a list")
    for flag in flags:
        if flag == FLAG_WAIT_KILLABLE_RECV:
            raise NotImplementedFeature(f"seccomp flag {flag} (it only matters to a seccomp agent)")
        if flag not in FLAGS:
            raise InvalidSpec(f"linux.seccomp.flags: unknown flag {flag!r} (known: {', '.join(FLAGS)})")
    return flags


def _check_api_level(action_names: set[Any]) -> None:
    level = api_level()
    for name in sorted(str(n) for n in action_names):
        if level < _ACTION_API_LEVEL.get(name, 0):
            raise NotImplementedFeature(f"seccomp action {name} (kernel or libseccomp too old: API level {level})")


def requested(spec: dict[str, Any] | None) -> bool:
    """Whether a `linux.seccomp` object asks for a filter at all (runc: no defaultAction and no
    syscalls means seccomp is off)."""
    if not spec:
        return False
    return bool(spec.get("defaultAction") or spec.get("syscalls"))


# -- building the filter ------------------------------------------------------------------------


def _attr(ctx: int, attribute: int, value: int, what: str) -> None:
    ret = _seccomp().seccomp_attr_set(ctx, attribute, value)
    if ret != 0:
        raise SystemFailure(f"seccomp: setting {what}: {_strerror(ret)}", -ret)


def _add_arches(ctx: int, arches: Any) -> None:
    if arches is None:
        return
    if not isinstance(arches, list):
        raise InvalidSpec("linux.seccomp.architectures must be a list")
    lib = _seccomp()
    for arch in arches:
        if not isinstance(arch, str) or arch not in ARCHES:
            raise InvalidSpec(f"linux.seccomp.architectures: unknown architecture {arch!r}")
        token = lib.seccomp_arch_resolve_name(ARCHES[arch].encode())
        if token == 0:
            raise NotImplementedFeature(f"seccomp architecture {arch} (this libseccomp does not know it)")
        ret = lib.seccomp_arch_add(ctx, token)
        if ret != 0 and ret != -errno.EEXIST:  # EEXIST: the native architecture, always there
            raise SystemFailure(f"seccomp: adding architecture {arch}: {_strerror(ret)}", -ret)


def _rule_groups(conditions: list[tuple[int, int, int, int]]) -> list[list[tuple[int, int, int, int]]]:
    """One rule with every condition, or one rule per condition when an argument repeats."""
    indexes = [c[0] for c in conditions]
    if len(set(indexes)) == len(indexes):
        return [conditions]
    return [[c] for c in conditions]


def _add_rule(ctx: int, action: int, number: int, conditions: list[tuple[int, int, int, int]], where: str) -> None:
    array = (ScmpArgCmp * len(conditions))(*(ScmpArgCmp(*c) for c in conditions)) if conditions else None
    ret = _seccomp().seccomp_rule_add_array(ctx, action, number, len(conditions), array)
    if ret != 0:
        raise InvalidSpec(f"{where}: libseccomp refused the rule: {_strerror(ret)}")


def compile_filter(spec: dict[str, Any], cache_dir: str | None = None) -> SeccompFilter:
    """Validate `linux.seccomp` and build the libseccomp filter, without loading it.

    With `cache_dir` (a root-only directory), the BPF program libseccomp generates is kept
    there, keyed by the spec and the libseccomp version and kernel API level: the next
    container with the same profile gets it without libseccomp (compiling costs ~4 ms, and
    libseccomp generates the program again inside seccomp_load, ~8 ms more)."""
    if not isinstance(spec, dict):
        raise InvalidSpec("linux.seccomp must be an object")
    if spec.get("listenerPath"):
        raise NotImplementedFeature("seccomp listenerPath (seccomp agents and SCMP_ACT_NOTIFY)")
    if not requested(spec):
        return SeccompFilter(None)
    default_name = spec.get("defaultAction")
    default = _action(default_name, spec.get("defaultErrnoRet"), "linux.seccomp.defaultAction")
    syscalls = spec.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise InvalidSpec("linux.seccomp.syscalls must be a list")
    # validate everything before touching libseccomp, so errors do not depend on the library
    plan: list[tuple[str, int, list[tuple[int, int, int, int]], str]] = []
    for index, entry in enumerate(syscalls):
        if not isinstance(entry, dict):
            raise InvalidSpec(f"{_where(index)} must be an object")
        names = _names(entry.get("names"), _where(index))
        where = _where(index, ",".join(names[:3]) + (",..." if len(names) > 3 else ""))
        action = _action(entry.get("action"), entry.get("errnoRet"), where)
        conditions = _conditions(entry.get("args"), where)
        for name in names:
            plan.append((name, action, conditions, _where(index, name)))
    flags = _flags(spec)
    _check_api_level({default_name, *(entry.get("action") for entry in syscalls)})
    cache_path = _cache_path(cache_dir, spec) if cache_dir else None
    if cache_path is not None:
        cached = _read_cached(cache_path, str(default_name))
        if cached is not None:
            return cached

    lib = _seccomp()
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise SystemFailure(f"seccomp_init({default_name}) failed", ctypes.get_errno())
    filt = SeccompFilter(ctx, default_action=str(default_name))
    try:
        _attr(ctx, _ATTR_CTL_NNP, 0, "no_new_privs off (the runtime sets it from process.noNewPrivileges)")
        # raw kernel errors from seccomp_load instead of a blanket ECANCELED; best effort
        lib.seccomp_attr_set(ctx, _ATTR_API_SYSRAWRC, 1)
        _add_arches(ctx, spec.get("architectures"))
        for flag in flags:
            attribute, level = FLAGS[flag]
            if api_level() < level:
                raise NotImplementedFeature(f"seccomp flag {flag} (kernel or libseccomp too old)")
            _attr(ctx, attribute, 1, flag)
        if len(plan) > _OPTIMIZE_OVER:
            lib.seccomp_attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)  # best effort: only speed is at stake
        for name, action, conditions, where in plan:
            if action == default:
                continue
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number == _NR_SCMP_ERROR:
                filt.skipped.append(name)
                continue
            for group in _rule_groups(conditions):
                _add_rule(ctx, action, number, group, where)
                filt.rules += 1
    except BaseException:
        filt.release()
        raise
    filt.flag_bits = sum(_FLAG_BITS[flag] for flag in flags)
    if cache_path is not None:
        _write_cached(cache_path, filt)
    return filt


# --- the compiled-program cache ---

_FLAG_BITS = {FLAG_TSYNC: 1, FLAG_LOG: 2, FLAG_SPEC_ALLOW: 4}  # SECCOMP_FILTER_FLAG_* values
_SYS_seccomp = 317  # x86_64
_SECCOMP_SET_MODE_FILTER = 1
CACHE_FORMAT = 1


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class ProgramFilter(SeccompFilter):
    """A filter whose BPF program libseccomp generated earlier: loaded with seccomp(2) directly,
    with the flags libseccomp would have passed."""

    def __init__(self, program: bytes, flag_bits: int, *, default_action: str, skipped: list[str], rules: int) -> None:
        super().__init__(None, default_action=default_action, skipped=skipped, rules=rules)
        self.program = program
        self.flag_bits = flag_bits

    @property
    def enabled(self) -> bool:
        return True

    def load(self) -> None:
        buf = ctypes.create_string_buffer(self.program, len(self.program))
        prog = _SockFprog(len(self.program) // 8, ctypes.cast(buf, ctypes.c_void_p))
        ret = libc.syscall_raw(_SYS_seccomp, ctypes.c_uint(_SECCOMP_SET_MODE_FILTER), ctypes.c_uint(self.flag_bits),
                               ctypes.byref(prog))
        if ret != 0:
            err = ctypes.get_errno()
            raise SystemFailure(f"loading the seccomp filter (default action {self.default_action}, {self.rules} rules, "
                                f"cached program): {os.strerror(err)}"
                                + (" (without no_new_privs this needs CAP_SYS_ADMIN)" if err == errno.EACCES else ""),
                                err)

    def export_bpf(self) -> bytes:
        return self.program


def _cache_path(cache_dir: str, spec: dict[str, Any]) -> str | None:
    from _sha256 import sha256  # built in; hashlib would load OpenSSL first (~2.5 ms per create)

    from dockyard.utils import fastjson  # not json: it imports re, which the runtime avoids

    try:
        key_material = fastjson.dumps([CACHE_FORMAT, spec, list(version()), api_level(), os.uname().machine])
    except (TypeError, ValueError):
        return None
    return os.path.join(cache_dir, sha256(key_material.encode()).hexdigest())


def _trusted(fd: int) -> bool:
    st = os.fstat(fd)
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _read_cached(path: str, default_action: str) -> ProgramFilter | None:
    from dockyard.utils import fastjson

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not _trusted(fd):
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            header = fastjson.loads(f.readline())
            program = f.read()
        if not program or len(program) % 8 or len(program) // 8 > 0xFFFF:
            return None
        return ProgramFilter(program, int(header["flags"]), default_action=default_action,
                             skipped=list(header.get("skipped") or []), rules=int(header.get("rules", 0)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    finally:
        os.close(fd)


def _write_cached(path: str, filt: SeccompFilter) -> None:
    """Best effort: a cache that cannot be written only costs time."""
    from dockyard.utils import fastjson

    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if not _trusted(dfd):
                return
        finally:
            os.close(dfd)
        header = fastjson.dumps({"flags": filt.flag_bits, "skipped": filt.skipped, "rules": filt.rules}).encode()
        data = header + b"\n" + filt.export_bpf()
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except (OSError, SystemFailure):
        return


def set_no_new_privs() -> None:
    """prctl(PR_SET_NO_NEW_PRIVS): execve can no longer grant privileges (setuid, file caps)."""
    try:
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    except SystemFailure as e:
        raise SystemFailure(f"setting no_new_privs: {e}", e.errno) from None


def supported() -> dict[str, Any]:
    """The `linux.seccomp` part of `runtime features` (OCI features.json)."""
    if not available():
        return {"enabled": False}
    lib = _seccomp()
    level = api_level()
    actions = [a for a in ACTIONS if level >= _ACTION_API_LEVEL.get(a, 0)]
    archs = [a for a, lib_name in ARCHES.items() if lib.seccomp_arch_resolve_name(lib_name.encode()) != 0]
    return {
        "enabled": True,
        "actions": sorted(actions),
        "operators": sorted(OPERATORS),
        "archs": sorted(archs),
        "knownFlags": [FLAG_TSYNC, FLAG_SPEC_ALLOW, FLAG_LOG],
        "supportedFlags": [flag for flag, (_, need) in FLAGS.items() if level >= need],
    }
