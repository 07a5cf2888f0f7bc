"""Waiting on a container process in the foreground (`run`, `exec` without --detach).

The runtime is the child subreaper, so the process is re-parented to it; signals the runtime
receives are forwarded, and with a terminal the runtime copies bytes between its own stdio and
the pty master.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import termios
import tty

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def exit_code(status: int) -> int:
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 255


def wait_foreground(pid: int, master: int | None = None) -> int:
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    if master is None:
        return _reap_until(pid)
    return _proxy(pid, master)


def _reap_until(pid: int, block: bool = True) -> int:
    while True:
        try:
            child, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return 255
        if child == pid:
            return exit_code(status)
        if not block and child == 0:
            return -1


def _proxy(pid: int, master: int) -> int:
    stdin_is_tty = os.isatty(0)
    saved = termios.tcgetattr(0) if stdin_is_tty else None
    if stdin_is_tty:
        tty.setraw(0)
        _copy_size(0, master)
        signal.signal(signal.SIGWINCH, lambda *_: _copy_size(0, master))
    watch = [master, 0]
    try:
        while True:
            code = _reap_until(pid, block=False)
            if code >= 0:
                _drain(master)
                return code
            try:
                ready, _, _ = select.select(watch, [], [], 0.1)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as e:
                    if e.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    watch.remove(master)
                else:
                    _write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    watch.remove(0)
                else:
                    _write_all(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)


def _drain(master: int) -> None:
    while True:
        ready, _, _ = select.select([master], [], [], 0)
        if not ready:
            return
        try:
            data = os.read(master, 65536)
        except OSError:
            return
        if not data:
            return
        _write_all(1, data)


def _copy_size(src: int, dst: int) -> None:
    import fcntl

    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
