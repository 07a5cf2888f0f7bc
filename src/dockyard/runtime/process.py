"""The last steps before a container process becomes the user's program.

Shared by the container init and by `exec`: resource limits, the user and groups, capabilities,
no_new_privs, seccomp, the working directory, no leaked descriptors, then execve.
"""

from __future__ import annotations

import _signal  # the C module: `signal` builds enums at import time, which costs milliseconds
import os
import resource
import stat

from dockyard.errors import InvalidSpec, SystemFailure
from dockyard.linux import libc
from dockyard.runtime.spec import RLIMITS
from dockyard.security import capabilities
from dockyard.security import seccomp as seccomp_mod

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any, NoReturn

# Everything below runs after pivot_root or setns into the container's mount namespace, where the
# host's Python library is out of sight: nothing may be imported lazily from here on.

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def env_dict(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def find_executable(name: str, env: dict[str, str], cwd: str) -> str:
    """Resolve args[0] the way execvp does, inside the current root; errors as Go's runc words them."""
    if "/" in name:
        path = name if name.startswith("/") else os.path.join(cwd, name)
        try:
            st = os.stat(path)
        except OSError as e:
            raise SystemFailure(f'exec: "{name}": stat {name}: {e.strerror.lower()}', e.errno or 0) from None
        if stat.S_ISDIR(st.st_mode) or not os.access(path, os.X_OK):
            raise SystemFailure(f'exec: "{name}": permission denied', 13)
        return path
    for directory in env.get("PATH", DEFAULT_PATH).split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(candidate, os.X_OK):
            return candidate
    raise SystemFailure(f'exec: "{name}": executable file not found in $PATH', 2)


def home_of(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"


def set_rlimits(rlimits: list[dict[str, Any]]) -> None:
    for rl in rlimits:
        try:
            resource.setrlimit(RLIMITS[rl["type"]], (rl["soft"], rl["hard"]))
        except (ValueError, OSError) as e:
            raise SystemFailure(f"setrlimit {rl['type']} ({rl['soft']}, {rl['hard']}): {e}") from None


def set_oom_score_adj(value: int | None) -> None:
    if value is None:
        return
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(value))


def reset_signals() -> None:
    """Python installs handlers for SIGINT and ignores SIGPIPE/SIGXFSZ; the program must not inherit that."""
    for sig in (_signal.SIGINT, _signal.SIGPIPE, _signal.SIGXFSZ, _signal.SIGTERM, _signal.SIGCHLD, _signal.SIGHUP):
        _signal.signal(sig, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


def close_inherited_fds(preserve_fds: int, keep: set[int]) -> None:
    """Close every descriptor the runtime inherited beyond stdio and the preserved ones.

    Anything else could be a host directory, and `cwd: /proc/self/fd/N` would then put the
    process outside its root before execve (the CVE-2024-21626 class)."""
    limit = 3 + preserve_fds
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= limit and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the descriptor listdir itself used


class Prepared:
    """What the final steps need, resolved while the runtime can still report errors."""

    def __init__(self, process: dict[str, Any], in_userns: bool) -> None:
        self.process = process
        self.args: list[str] = list(process.get("args") or [])
        if not self.args:
            raise InvalidSpec("process.args must not be empty")
        self.cwd = process.get("cwd") or "/"
        self.env = env_dict(process.get("env") or [])
        user = process.get("user") or {}
        self.uid = int(user.get("uid", 0))
        self.gid = int(user.get("gid", 0))
        self.groups = [int(g) for g in user.get("additionalGids") or []]
        self.umask = user.get("umask")
        self.in_userns = in_userns
        self.no_new_privs = bool(process.get("noNewPrivileges"))
        self.caps = capabilities.CapabilitySets.from_spec(process.get("capabilities"))
        capabilities.require_available(self.caps)
        self.path = ""

    def resolve(self) -> None:
        """Run inside the container's root: find the program, fill in HOME."""
        if "HOME" not in self.env:
            self.env["HOME"] = home_of(self.uid)
        try:
            os.chdir(self.cwd)
            os.getcwd()  # fails (ENOENT) when the directory is not reachable from our root
        except OSError as e:
            raise SystemFailure(f"chdir to cwd ({self.cwd!r}) set in config.json failed: {e.strerror}", e.errno or 0) from None
        self.path = find_executable(self.args[0], self.env, self.cwd)


def finalize_and_exec(prep: Prepared, seccomp: Any, preserve_fds: int = 0) -> NoReturn:
    """Drop to the process's identity and privileges and execve. Errors raise before the exec."""
    proc = prep.process
    set_rlimits(proc.get("rlimits") or [])
    caps = prep.caps
    # no leaked host descriptors (CVE-2024-21626): everything past stdio and preserved fds closes on exec
    libc.close_range_cloexec(3 + preserve_fds)
    if seccomp is not None and not prep.no_new_privs:
        seccomp.load()  # while we still hold CAP_SYS_ADMIN
    capabilities.drop_bounding(caps.bounding)
    libc.prctl(libc.PR_SET_KEEPCAPS, 1)
    if not prep.in_userns or _setgroups_allowed():
        os.setgroups(prep.groups)
    os.setresgid(prep.gid, prep.gid, prep.gid)
    os.setresuid(prep.uid, prep.uid, prep.uid)
    libc.prctl(libc.PR_SET_KEEPCAPS, 0)
    capabilities.apply(caps)
    if prep.umask is not None:
        os.umask(int(prep.umask))
    # re-enter the cwd by path now that we are the final user (and it is inside the new root)
    os.chdir(prep.cwd)
    if prep.no_new_privs:
        seccomp_mod.set_no_new_privs()
        if seccomp is not None:
            seccomp.load()
    os.execve(prep.path, prep.args, prep.env)
    raise AssertionError("unreachable")


def _setgroups_allowed() -> bool:
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "allow"
    except OSError:
        return True
