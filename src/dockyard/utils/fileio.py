"""Atomic file writes: a reader sees the old content or the new, never a torn file."""

from __future__ import annotations

import os

from dockyard.utils import fastjson

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any


def write_atomic(path: str, data: bytes, mode: int = 0o644, *, sync: bool = True) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it into place."""
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    if sync:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_json_atomic(path: str, value: Any, mode: int = 0o644, *, sync: bool = True) -> None:
    write_atomic(path, fastjson.dumps(value).encode(), mode, sync=sync)
