"""Typed messages between the runtime and the processes it forks.

Two pipes carry newline-terminated JSON objects, each with a "type". The child's end is
close-on-exec, so a successful execve shows up as end-of-file.

    runtime (parent)                    stage-1 (joins/creates namespaces)        init
      fork ------------------------------>  wait "go"
      join cgroups, write id maps
      "go" ----------------------------->  setns/unshare, fork --------------------> (pid 1)
      <----------------------------- "pid" {pid}  exit
      <-------------------------------------------------------------- "hooks" (mounts ready)
      run prestart/createRuntime hooks
      "ok" -------------------------------------------------------------------->
      <-------------------------------------------------------------- "ready" (waits on exec.fifo)
    Any side may send "error" {message} instead; the runtime then tears everything down.
"""

from __future__ import annotations

import os

from dockyard.errors import DockyardError, SystemFailure
from dockyard.utils import fastjson as json

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any


class ChildError(DockyardError):
    """An error reported by a forked stage of the runtime."""


class Channel:
    """One end of a pair of pipes carrying newline-terminated JSON messages.

    Pipes rather than a socketpair: the socket module costs milliseconds to import, and writes
    below PIPE_BUF are atomic even with two writers (stage-1 and the init share their end).
    """

    _MAX = 4000  # stay below PIPE_BUF (4096)

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self._buffer = b""

    @classmethod
    def pair(cls) -> tuple["Channel", "Channel"]:
        """(parent end, child end); each side closes the other's after fork."""
        down_r, down_w = os.pipe2(os.O_CLOEXEC)
        up_r, up_w = os.pipe2(os.O_CLOEXEC)
        return cls(up_r, down_w), cls(down_r, up_w)

    def send(self, kind: str, **payload: Any) -> None:
        payload["type"] = kind
        data = json.dumps(payload).encode()
        if len(data) > self._MAX:
            payload["message"] = str(payload.get("message", ""))[: self._MAX // 2]
            data = json.dumps(payload).encode()[: self._MAX]
        os.write(self.write_fd, data + b"\n")

    def recv(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            chunk = os.read(self.read_fd, 65536)
            if not chunk:
                return {"type": "eof"}
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def expect_any(self, what: str) -> dict[str, Any]:
        """The next message; an "error" from the other side or end-of-file raises."""
        msg = self.recv()
        if msg["type"] == "error":
            raise ChildError(msg.get("message", "unknown error"))
        if msg["type"] == "eof":
            raise SystemFailure(f"{what}: the process exited without reporting")
        return msg

    def expect(self, kind: str, what: str) -> dict[str, Any]:
        msg = self.expect_any(what)
        if msg["type"] != kind:
            raise SystemFailure(f"{what}: expected {kind!r}, got {msg['type']!r}")
        return msg

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename}" if exc.filename else ""
        where += f" -> {exc.filename2}" if exc.filename2 else ""
        return f"{exc.strerror}:{where}" if where else exc.strerror
    return str(exc) or exc.__class__.__name__


def report_and_exit(chan: Channel, exc: BaseException) -> None:
    """Last words of a forked stage: report the error upstream and exit without cleanup."""
    message = describe(exc)
    try:
        chan.send("error", message=message)
    except OSError:
        # nobody is listening any more (after `create` returned): the container's stderr is all we have
        try:
            os.write(2, f"dockyard-runtime: {message}\n".encode())
        except OSError:
            pass
    os._exit(1)
