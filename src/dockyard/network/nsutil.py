"""Sockets that live in another network namespace, made from a multithreaded daemon.

A socket belongs to the network namespace it was created in, for its whole life, whichever thread
later uses it. setns(CLONE_NEWNET) changes the namespace of the calling thread only and, unlike
joining a mount or user namespace, is allowed in a multithreaded process. So the daemon makes a
socket for a container by starting a dedicated thread that joins the container's namespace,
creates and binds the socket, switches back and exits. That thread runs nothing else, so no
other work ever happens in the wrong namespace, and the daemon's threads stay in the host's.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from dockyard.errors import SystemFailure
from dockyard.linux import libc

T = TypeVar("T")


def call_in_netns(netns_path: str, fn: Callable[[], T]) -> T:
    """Run `fn` in a fresh thread that has joined the network namespace at `netns_path`
    (a /run/netns/NAME bind mount or /proc/PID/ns/net) and return its result or raise its error.

    The thread returns to the original namespace afterwards and then exits; if it cannot return,
    it still exits, so nothing else ever runs in it."""
    outcome: dict[str, Any] = {}

    def worker() -> None:
        try:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            outcome["error"] = SystemFailure(f"open own network namespace: {exc.strerror}", exc.errno or 0)
            return
        try:
            try:
                target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                outcome["error"] = SystemFailure(f"open network namespace {netns_path}: {exc.strerror}", exc.errno or 0)
                return
            try:
                libc.setns(target, libc.CLONE_NEWNET)
            except SystemFailure as exc:
                outcome["error"] = SystemFailure(f"join network namespace {netns_path}: {exc}", exc.errno)
                return
            finally:
                os.close(target)
            try:
                outcome["value"] = fn()
            except BaseException as exc:  # handed to the caller's thread
                outcome["error"] = exc
            finally:
                try:
                    libc.setns(home, libc.CLONE_NEWNET)
                except SystemFailure:
                    pass  # the thread exits next anyway
        finally:
            os.close(home)

    thread = threading.Thread(target=worker, name=f"netns:{os.path.basename(netns_path)}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def socket_in_netns(netns_path: str, family: int, type: int, bind_addr: tuple[Any, ...]) -> socket.socket:
    """A socket created and bound to `bind_addr` inside the network namespace at `netns_path`.

    Stream sockets get SO_REUSEADDR (so a restarted listener can rebind at once) but are not put
    in the listening state; the caller does that, from any thread. The socket is close-on-exec and
    blocking, as socket.socket makes it."""

    def make() -> socket.socket:
        sock = socket.socket(family, type)
        try:
            if type == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(bind_addr)
        except OSError as exc:
            sock.close()
            raise SystemFailure(f"bind {bind_addr} in network namespace {netns_path}: {exc.strerror}", exc.errno or 0) from exc
        return sock

    return call_in_netns(netns_path, make)
