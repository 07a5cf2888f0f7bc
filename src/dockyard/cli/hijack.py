"""Hijacked attach/exec streams: raw bytes with a TTY, 8-byte multiplexed frames without."""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import sys
import threading
from typing import Any

from dockyard.cli.client import API, Client, CliError, error_from


def hijack(client: Client, path: str, body: bytes | None = None) -> socket.socket:
    """POST `path` with Upgrade: tcp; return the raw socket after 101 (or 200)."""
    conn = client.connection()
    headers = {"Connection": "Upgrade", "Upgrade": "tcp"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request("POST", API + path, body=body, headers=headers)
    resp = conn.getresponse()
    if resp.status >= 400:
        raise error_from(resp)
    if resp.status not in (101, 200):
        raise CliError(f"unexpected answer {resp.status} to {path}")
    sock = conn.sock
    assert sock is not None
    # bytes the HTTP parser read past the headers (without waiting for more: none may come yet)
    sock.setblocking(False)
    try:
        buffered = resp.fp.peek() if hasattr(resp.fp, "peek") else b""  # type: ignore[union-attr]
    except (BlockingIOError, OSError):
        buffered = b""
    pending = resp.fp.read1(len(buffered)) if buffered else b""  # type: ignore[union-attr]
    sock.setblocking(True)
    sock.settimeout(None)
    return _Prefixed(sock, pending)  # type: ignore[return-value]


class _Prefixed:
    """A socket whose first recv returns bytes the HTTP parser already buffered."""

    def __init__(self, sock: socket.socket, pending: bytes) -> None:
        self.sock = sock
        self.pending = pending

    def recv(self, n: int) -> bytes:
        if self.pending:
            out, self.pending = self.pending[:n], self.pending[n:]
            return out
        return self.sock.recv(n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def _write(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _recv_exact(sock: Any, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None if not buf else buf
        buf += chunk
    return buf


def pump_output(sock: Any, tty: bool) -> None:
    out, err = sys.stdout.fileno(), sys.stderr.fileno()
    if tty:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return
            _write(out, chunk)
    while True:
        header = _recv_exact(sock, 8)
        if header is None or len(header) < 8:
            return
        kind, length = header[0], struct.unpack(">I", header[4:])[0]
        payload = _recv_exact(sock, length) or b""
        _write(err if kind == 2 else out, payload)


def pump_input(sock: Any) -> None:
    fd = sys.stdin.fileno()
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class RawTerminal:
    """Raw mode on stdin while active; restores the saved attributes on exit."""

    def __init__(self) -> None:
        self.saved: list[Any] | None = None

    def __enter__(self) -> "RawTerminal":
        import termios
        import tty

        if os.isatty(sys.stdin.fileno()):
            self.saved = termios.tcgetattr(sys.stdin.fileno())
            tty.setraw(sys.stdin.fileno())
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        if self.saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)


def terminal_size() -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return None
    return size.lines, size.columns


def follow_resize(client: Client, resize_path: str) -> None:
    """Send the window size now and on each SIGWINCH (resize_path ends before ?h=&w=)."""
    def send(*_: object) -> None:
        size = terminal_size()
        if size is None:
            return
        try:
            client.post(f"{resize_path}?h={size[0]}&w={size[1]}")
        except CliError:
            pass
    send()
    signal.signal(signal.SIGWINCH, send)


def stream(sock: Any, tty: bool, stdin: bool) -> threading.Thread:
    """Start copying output (and input when `stdin`); returns the output thread to join."""
    if stdin:
        threading.Thread(target=pump_input, args=(sock,), daemon=True).start()
    out = threading.Thread(target=pump_output, args=(sock, tty), daemon=True)
    out.start()
    return out


__all__ = ["hijack", "stream", "RawTerminal", "follow_resize", "select"]
