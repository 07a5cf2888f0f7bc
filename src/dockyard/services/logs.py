"""Reading a container's json-file log (written by the supervisor, see dockyard.shim.logger).

`LogReader` returns the entries already written (across rotated files, oldest first) and, when
following, the ones that arrive later. A follower keeps the file it reads open, so it loses
nothing when the log is rotated (it finishes the old file, then moves to the new one) or when the
container is removed while the reader is still catching up.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class LogEntry:
    stream: str      # "stdout" or "stderr"
    data: bytes
    time: str        # RFC 3339 with nanoseconds, as the supervisor wrote it


def _parse(line: bytes) -> LogEntry | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    return LogEntry(str(value.get("stream", "stdout")), str(value.get("log", "")).encode("utf-8", "surrogateescape"),
                    str(value.get("time", "")))


def rotated_files(path: str) -> list[str]:
    """`path.N ... path.1` that exist, oldest first."""
    out = []
    i = 1
    while os.path.exists(f"{path}.{i}"):
        out.append(f"{path}.{i}")
        i += 1
    return list(reversed(out))


class LogReader:
    def __init__(self, path: str) -> None:
        self.path = path
        self._file = None
        self._partial = b""

    def _open_current(self) -> bool:
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - kept open while following
        except FileNotFoundError:
            self._file = None
            return False
        self._partial = b""
        return True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _read_available(self) -> list[LogEntry]:
        if self._file is None:
            return []
        data = self._partial + self._file.read()
        complete, sep, rest = data.rpartition(b"\n")
        self._partial = rest
        if not sep:
            return []
        return [e for e in (_parse(line) for line in complete.split(b"\n")) if e is not None]

    def existing(self, tail: int | None = None) -> list[LogEntry]:
        """What is in the log now (the last `tail` entries if given); positions the follower after it."""
        self._open_current()  # first: a rotation from now on leaves this file complete for us
        held = os.fstat(self._file.fileno()) if self._file is not None else None
        entries: list[LogEntry] = []
        for name in rotated_files(self.path):
            try:
                with open(name, "rb") as f:
                    st = os.fstat(f.fileno())
                    if held is not None and (st.st_ino, st.st_dev) == (held.st_ino, held.st_dev):
                        break  # rotated since we opened it: read below; newer files come by following
                    entries.extend(e for e in (_parse(line) for line in f.read().splitlines()) if e is not None)
            except FileNotFoundError:
                continue  # rotated away while we read
        entries.extend(self._read_available())
        if tail is not None:
            entries = entries[-tail:] if tail > 0 else []
        return entries

    def _rotated(self) -> bool:
        """Whether the path now names another file than the one we hold."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        if self._file is None:
            return True
        held = os.fstat(self._file.fileno())
        return (st.st_ino, st.st_dev) != (held.st_ino, held.st_dev) or st.st_size < self._file.tell()

    def _open_next(self) -> None:
        """After a rotation: the file written after the one we finished. With several rotations
        since, that is one of the rotated files (path.K), not the current log: skipping to the
        current one would lose everything in between."""
        held = os.fstat(self._file.fileno()) if self._file is not None else None
        truncated = held is not None and os.path.exists(self.path) and \
            (os.stat(self.path).st_ino, os.stat(self.path).st_dev) == (held.st_ino, held.st_dev)
        self.close()
        if held is not None and not truncated:
            chain = rotated_files(self.path) + [self.path]  # oldest first
            for i, name in enumerate(chain):
                try:
                    st = os.stat(name)
                except FileNotFoundError:
                    continue
                if (st.st_ino, st.st_dev) == (held.st_ino, held.st_dev):
                    for following in chain[i + 1:]:
                        try:
                            self._file = open(following, "rb")  # noqa: SIM115 - kept open while following
                            self._partial = b""
                            return
                        except FileNotFoundError:
                            continue
                    break
        self._open_current()

    async def follow(self, running: Callable[[], bool]) -> AsyncIterator[LogEntry]:
        """Entries written after `existing`, until `running()` is false and everything is read."""
        try:
            while True:
                alive = running()  # asked before reading: what was written before the exit is read
                entries = self._read_available()
                for e in entries:
                    yield e
                if entries:
                    continue
                if self._rotated():
                    # the writer moved on: what it wrote to the old file before the rename is
                    # there now (it writes no more to it); read that before switching files
                    for e in self._read_available():
                        yield e
                    self._open_next()
                    continue
                if not alive:
                    return
                await asyncio.sleep(POLL_INTERVAL)
        finally:
            self.close()
