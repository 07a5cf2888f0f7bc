"""Pseudo-terminals for containers: made inside the container, master handed out over a socket."""

from __future__ import annotations

import array
import fcntl
import os
import socket
import struct
import termios

from dockyard.errors import InvalidArgument

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any


def connect_console_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise InvalidArgument(f"console socket {path}: {e.strerror}") from None
    return sock


def open_pty(size: dict[str, Any] | None) -> tuple[int, int, str]:
    """A new pty in the current mount namespace's /dev/ptmx: (master, slave, slave path)."""
    master, slave = os.openpty()
    name = os.ttyname(slave)
    if size:
        set_size(slave, int(size.get("height", 0)), int(size.get("width", 0)))
    return master, slave, name


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def send_master(sock: socket.socket, master: int, name: str) -> None:
    sock.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [master]))])


def recv_master(sock: socket.socket) -> int:
    fds = array.array("i")
    _msg, ancdata, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    if not fds:
        raise InvalidArgument("console socket: no file descriptor received")
    return fds[0]


def make_controlling(slave: int) -> None:
    """Make `slave` the controlling terminal and stdio of this (session-leading) process."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
