"""Seccomp filters loaded for real, each in a forked child; the test process stays unfiltered."""

import ctypes
import errno
import json
import os
import resource
import signal

import pytest

from dockyard.linux import libc
from dockyard.security import seccomp

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not seccomp.available(), reason="libseccomp.so.2 is not installed"),
]

DOCKER_LIKE = os.path.join(os.path.dirname(__file__), "..", "data", "seccomp-docker-like.json")

_c = ctypes.CDLL(None, use_errno=True)
_c.syscall.restype = ctypes.c_long

SYS_personality = 135
SYS_clone = 56
SYS_mount = 165
SYS_unshare = 272
SYS_keyctl = 250
SYS_socket = 41
PER_QUERY = 0xFFFFFFFF
ADDR_NO_RANDOMIZE = 0x0040000
AF_UNIX, AF_VSOCK = 1, 40
SOCK_STREAM = 1
SIGCHLD = 17


def raw(number, *args):
    """A syscall by number: (return value, errno)."""
    ctypes.set_errno(0)
    ret = _c.syscall(ctypes.c_long(number), *(ctypes.c_ulong(a) for a in args))
    return ret, ctypes.get_errno() if ret < 0 else 0


def in_child(body):
    """Run body() in a forked child; returns (wait status, what body returned or raised)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGSYS would dump core
            try:
                message = {"result": body()}
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                message = {"error": f"{type(e).__name__}: {e}", "errno": getattr(e, "errno", None)}
            os.write(w, json.dumps(message).encode())
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return status, json.loads(b"".join(chunks)) if chunks else None


def result_of(body):
    status, message = in_child(body)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child ended with status {status:#x}"
    assert message is not None and "error" not in message, message
    return message["result"]


def try_mkdir(path):
    try:
        os.mkdir(path)
    except OSError as e:
        return e.errno
    return 0


def allow_all(*rules, **extra):
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules), **extra}


def test_errno_rule_blocks_mkdir_in_the_child_only(tmp_path):
    filt = seccomp.compile_filter(allow_all({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}))

    def body():
        filt.load()
        return [try_mkdir(str(tmp_path / "denied")), os.path.exists(str(tmp_path))]

    try:
        assert result_of(body) == [errno.EPERM, True]
    finally:
        filt.release()
    assert not (tmp_path / "denied").exists()
    os.mkdir(tmp_path / "allowed")  # the parent is unaffected


def test_custom_errno_and_default_eperm(tmp_path):
    filt = seccomp.compile_filter(allow_all(
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS},
        {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO"},
    ))
    os.mkdir(tmp_path / "d")

    def body():
        filt.load()
        try:
            os.rmdir(str(tmp_path / "d"))
            rmdir = 0
        except OSError as e:
            rmdir = e.errno
        return [try_mkdir(str(tmp_path / "x")), rmdir]

    with filt:
        assert result_of(body) == [errno.EROFS, errno.EPERM]


def test_argument_condition_allows_one_personality_value():
    """personality(2) is denied unless arg 0 is the query value 0xffffffff."""
    filt = seccomp.compile_filter(allow_all({"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
        {"index": 0, "value": PER_QUERY, "op": "SCMP_CMP_NE"}]}))

    def body():
        filt.load()
        query = raw(SYS_personality, PER_QUERY)
        change = raw(SYS_personality, ADDR_NO_RANDOMIZE)
        return [query[1], change]

    with filt:
        query_errno, change = result_of(body)
    assert query_errno == 0
    assert change == [-1, errno.EPERM]


def test_same_argument_conditions_are_alternatives():
    """Two conditions on arg 0 become two rules: either value is denied, others pass."""
    filt = seccomp.compile_filter(allow_all({"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
                                             "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                                                      {"index": 1, "value": signal.SIGCONT, "op": "SCMP_CMP_EQ"}]}))

    def body():
        filt.load()
        out = []
        for sig in (0, signal.SIGCONT, signal.SIGWINCH):
            try:
                os.kill(os.getpid(), sig)
                out.append(0)
            except OSError as e:
                out.append(e.errno)
        return out

    with filt:
        assert result_of(body) == [errno.EACCES, errno.EACCES, 0]


def test_masked_eq_on_clone_flags():
    """clone is denied when (flags & CLONE_NEWNS) == CLONE_NEWNS: fork works, clone(CLONE_NEWNS) fails."""
    filt = seccomp.compile_filter(allow_all({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "args": [
        {"index": 0, "value": libc.CLONE_NEWNS, "valueTwo": libc.CLONE_NEWNS, "op": "SCMP_CMP_MASKED_EQ"}]}))

    def body():
        filt.load()
        ret, err = raw(SYS_clone, libc.CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0)
        if ret == 0:
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        _, status = os.waitpid(pid, 0)
        return [ret, err, os.WEXITSTATUS(status)]

    with filt:
        assert result_of(body) == [-1, errno.EPERM, 7]


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"])
def test_killing_actions_end_the_child_with_sigsys(action, tmp_path):
    filt = seccomp.compile_filter(allow_all({"names": ["mkdir", "mkdirat"], "action": action}))

    def body():
        filt.load()
        try_mkdir(str(tmp_path / "never"))
        return "survived"

    with filt:
        status, message = in_child(body)
    assert message is None
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS
    assert not (tmp_path / "never").exists()


def test_trace_without_a_tracer_fails_with_enosys(tmp_path):
    filt = seccomp.compile_filter(allow_all({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_TRACE"}))

    def body():
        filt.load()
        return try_mkdir(str(tmp_path / "traced"))

    with filt:
        assert result_of(body) == errno.ENOSYS


def test_log_action_lets_the_call_through(tmp_path):
    filt = seccomp.compile_filter(allow_all({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"},
                                            flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"]))

    def body():
        filt.load()
        return try_mkdir(str(tmp_path / "logged"))

    with filt:
        assert result_of(body) == 0
    assert (tmp_path / "logged").is_dir()


def test_default_action_errno_with_an_allow_list(tmp_path):
    with open(DOCKER_LIKE) as f:
        spec = json.load(f)
    spec["syscalls"] = [entry for entry in spec["syscalls"] if entry["action"] == "SCMP_ACT_ALLOW" and "args" not in entry]
    spec["syscalls"][0]["names"] = [n for n in spec["syscalls"][0]["names"] if n not in ("mkdir", "mkdirat")]
    spec["defaultErrnoRet"] = errno.ENOSYS
    filt = seccomp.compile_filter(spec)

    def body():
        filt.load()
        return [try_mkdir(str(tmp_path / "no")), os.getpid() > 0]

    with filt:
        assert result_of(body) == [errno.ENOSYS, True]


def test_docker_like_profile(tmp_path):
    with open(DOCKER_LIKE) as f:
        filt = seccomp.compile_filter(json.load(f))
    target = str(tmp_path / "mnt")
    os.mkdir(target)

    def body():
        filt.load()
        out = {}
        out["unshare"] = raw(SYS_unshare, libc.CLONE_NEWNS)
        out["mount"] = raw(SYS_mount, 0, 0, 0, 0, 0)
        out["keyctl"] = raw(SYS_keyctl, 0, 0, 0, 0, 0)
        out["clone_newpid"] = raw(SYS_clone, libc.CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0)
        if out["clone_newpid"][0] == 0:  # only if the filter failed: leave at once
            os._exit(0)
        out["personality_query"] = raw(SYS_personality, PER_QUERY)[1]
        out["personality_change"] = raw(SYS_personality, ADDR_NO_RANDOMIZE)
        vsock = raw(SYS_socket, AF_VSOCK, SOCK_STREAM, 0)
        out["vsock"] = vsock[1]
        unix = raw(SYS_socket, AF_UNIX, SOCK_STREAM, 0)
        if unix[0] >= 0:
            os.close(unix[0])
        out["unix_socket"] = unix[1]
        # ordinary work: files, directories, processes, pipes
        os.mkdir(os.path.join(target, "dir"))
        with open(os.path.join(target, "dir", "f"), "w") as f:
            f.write("hello")
        with open(os.path.join(target, "dir", "f")) as f:
            out["read"] = f.read()
        pid = os.fork()  # glibc uses clone(SIGCHLD|...), no namespace flags
        if pid == 0:
            os._exit(3)
        out["fork"] = os.WEXITSTATUS(os.waitpid(pid, 0)[1])
        return out

    with filt:
        out = result_of(body)
    assert out["unshare"] == [-1, errno.EPERM]
    assert out["mount"] == [-1, errno.EPERM]
    assert out["keyctl"] == [-1, errno.EPERM]
    assert out["clone_newpid"] == [-1, errno.EPERM]
    assert out["personality_query"] == 0
    assert out["personality_change"] == [-1, errno.EPERM]
    assert out["vsock"] == errno.EPERM
    assert out["unix_socket"] == 0
    assert out["read"] == "hello"
    assert out["fork"] == 3


def test_loading_without_privileges_needs_no_new_privs():
    """As an unprivileged user, loading fails with EACCES unless no_new_privs is set first."""
    filt = seccomp.compile_filter(allow_all({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}))

    def without_nnp():
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        filt.load()

    def with_nnp():
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        seccomp.set_no_new_privs()
        filt.load()
        return [libc.prctl(libc.PR_GET_NO_NEW_PRIVS), try_mkdir("/tmp/dockyard-never-created")]

    with filt:
        _, failed = in_child(without_nnp)
        assert failed["errno"] == errno.EACCES
        assert "SystemFailure" in failed["error"] and "CAP_SYS_ADMIN" in failed["error"]
        assert result_of(with_nnp) == [1, errno.EPERM]


def test_filter_outlives_execve(tmp_path):
    """What the container init does: load, then execve; the new program is filtered too."""
    filt = seccomp.compile_filter(allow_all({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}))
    target = str(tmp_path / "after-exec")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.dup2(w, 2)
            filt.load()
            os.execv("/bin/mkdir", ["mkdir", target])
        finally:
            os._exit(127)
    os.close(w)
    with os.fdopen(r) as f:
        stderr = f.read()
    _, status = os.waitpid(pid, 0)
    filt.release()
    assert os.WEXITSTATUS(status) == 1
    assert "Operation not permitted" in stderr
    assert not os.path.exists(target)


def test_release_before_load_is_safe_and_load_after_release_does_nothing():
    filt = seccomp.compile_filter(allow_all({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}))
    filt.release()
    filt.release()
    assert not filt.enabled

    def body():
        filt.load()
        return try_mkdir("/proc/definitely/not")

    assert result_of(body) == errno.ENOENT

