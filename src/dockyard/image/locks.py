"""The store-wide lock between operations that add content and the garbage collector.

An operation that writes blobs or snapshots which no image references yet (a load, an
unpack, a commit) holds the lock shared from its first write until its image record is in
the database; garbage collection holds it exclusively. flock(2) locks belong to an open file
description, so threads of one process exclude each other too, and a killed process
releases its lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager


class StoreLock:
    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @contextmanager
    def shared(self) -> Iterator[None]:
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    @contextmanager
    def exclusive(self, blocking: bool = True) -> Iterator[bool]:
        """Yields whether the lock was taken (always True when blocking)."""
        fd = self._open()
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)
