"""Typed messages between the runtime and the processes it forks.

A SOCK_SEQPACKET socketpair keeps message boundaries; each message is one JSON object with a
"type". The child's end is close-on-exec, so a successful execve shows up as end-of-file.

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

import json
import os
import socket
from typing import Any

from dockyard.errors import DockyardError, SystemFailure


class ChildError(DockyardError):
    """An error reported by a forked stage of the runtime."""


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple["Channel", "Channel"]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        return cls(a), cls(b)

    def send(self, kind: str, **payload: Any) -> None:
        payload["type"] = kind
        self.sock.send(json.dumps(payload).encode())

    def recv(self) -> dict[str, Any]:
        data = self.sock.recv(65536)
        if not data:
            return {"type": "eof"}
        return json.loads(data)

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

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


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
