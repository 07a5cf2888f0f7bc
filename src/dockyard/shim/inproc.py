"""Running dockyard-runtime verbs in a forked copy of the supervisor instead of a new interpreter
(and the lightest ones, start and delete, in one of its threads).

Every container operation calls the OCI runtime's command line. For dockyard-runtime that is a
new Python interpreter each time (~10 ms to start and import, three times per `docker run`).
The supervisor has the runtime's modules loaded already, so it forks, sets the child up as the
runtime's own process would be (stdio, default signal dispositions, no asyncio wake-up fd) and
calls the runtime's `main(argv)` in the child: the same code, the same checks, minus the start-up.

Only when the interpreter itself is immutable (the private copy scripts/setup.sh installs with
`chattr +i`): the runtime's defence against CVE-2019-5736 (a container rewriting the runtime's
binary through /proc/<pid>/exe) relies on it, and the forked child's /proc/self/exe is the
supervisor's interpreter. Otherwise the runtime is spawned as a separate program, as for runc.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import sys

FS_IOC_GETFLAGS = 0x80086601
FS_IMMUTABLE_FL = 0x00000010
LAUNCHER_MARK = b"from dockyard.cli.runtime import main"
FRONT_MARK = b"dockyard-runtime-native-front launcher="  # in native/runtime_front.c
FRONT_MAX_SIZE = 1 << 20

_immutable: bool | None = None


def interpreter_is_immutable() -> bool:
    global _immutable
    if _immutable is None:
        try:
            fd = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
            try:
                flags = struct.unpack("l", fcntl.ioctl(fd, FS_IOC_GETFLAGS, struct.pack("l", 0)))[0]
            finally:
                os.close(fd)
            _immutable = bool(flags & FS_IMMUTABLE_FL)
        except OSError:
            _immutable = False
    return _immutable


def is_dockyard_runtime(path: str) -> bool:
    """Whether `path` is dockyard-runtime: its launcher script, or the native front that hands
    over to one (see scripts/setup.sh)."""
    launcher = native_front_launcher(path)
    try:
        with open(launcher or path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    return head.startswith(b"#!") and LAUNCHER_MARK in head


def native_front_launcher(path: str) -> str | None:
    """The launcher script that `path` hands over to, if it is dockyard-runtime's native front."""
    try:
        with open(path, "rb") as f:
            data = f.read(FRONT_MAX_SIZE)
    except OSError:
        return None
    start = data.find(FRONT_MARK) if data.startswith(b"\x7fELF") else -1
    if start < 0:
        return None
    end = data.find(b"\0", start)
    return os.fsdecode(data[start + len(FRONT_MARK):end]) if end > start else None


def usable(runtime_path: str) -> bool:
    return os.environ.get("DOCKYARD_SHIM_SPAWN_RUNTIME") != "1" and is_dockyard_runtime(runtime_path) \
        and interpreter_is_immutable()


# The light verbs that need not even a fork: they never enter the container (nothing of ours
# is exposed to it), wait for no child (the supervisor stays the only reaper) and print nothing.
CALLABLE = ("start", "delete")


def call_runtime(argv: list[str]) -> tuple[int, str]:
    """Run `runtime argv[1:]` (a verb in CALLABLE) in the calling thread: (exit code, error)."""
    from dockyard.cli.runtime import CALLABLE as runtime_callable, call

    assert set(CALLABLE) <= set(runtime_callable)
    return call(list(argv[1:]))


def preload() -> None:
    """Import what the runtime's verbs import, once, in the supervisor."""
    import importlib

    for name in ("dockyard.cli.runtime", "dockyard.runtime.container", "dockyard.runtime.execute",
                 "dockyard.runtime.init", "dockyard.cgroups", "dockyard.cgroups.v1", "dockyard.cgroups.v2",
                 "dockyard.cgroups.devices", "dockyard.cgroups.resources", "dockyard.security.seccomp"):
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    from dockyard.security import seccomp

    seccomp.available()  # dlopen libseccomp once, here, instead of in every forked verb


def fork_runtime(argv: list[str], stdin: int, stdout: int, stderr: int) -> int:
    """Run `runtime argv[1:]` in a forked child with the given stdio; the child's pid."""
    from dockyard.cli.runtime import main

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        for src, dst in ((stdin, 0), (stdout, 1), (stderr, 2)):
            if src != dst:
                os.dup2(src, dst)
        sys.argv = list(argv)
        code = main(list(argv[1:]))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001 - the child reports and exits, never returns
        try:
            os.write(2, f"dockyard-runtime: {type(e).__name__}: {e}\n".encode(errors="replace"))
        except OSError:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        os._exit(code if isinstance(code, int) else 1)
    return 0  # not reached
