"""Docker's json-file log driver: one `{"log","stream","time"}` object per line of output.

Lines are split as Docker splits them: a complete line (with its newline) is one entry; a partial
line waits for the rest until 16 KiB are buffered or the stream ends, and no entry holds more than
16 KiB (a longer line becomes several entries, only the last one ending in a newline). Rotation follows Docker:
before an entry would take the file past `max_size`, `<log>.N-1` is dropped, `<log>.K` becomes
`<log>.K+1`, the log becomes `<log>.1` and a new log is opened (with `max_files` <= 1 a new empty
log replaces it, renamed over it). A follower sees the inode change and reopens the path.

Writes are plain `os.write` calls on an O_APPEND descriptor, one per chunk read from the
container (at most ~64 KiB of output), so the event loop is held for the time the page cache
takes to copy that much, never for a disk flush.
"""

from __future__ import annotations

import json
import os

from dockyard.shim.protocol import rfc3339nano

PARTIAL_LIMIT = 16 * 1024
_STREAMS = {1: "stdout", 2: "stderr"}


class JsonFileLogger:
    def __init__(self, path: str, max_size: int = 0, max_files: int = 1) -> None:
        self.path = path
        self.max_size = max(0, int(max_size))
        self.max_files = max(1, int(max_files))
        self._partial: dict[int, bytes] = {1: b"", 2: b""}
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def write(self, stream: int, data: bytes) -> None:
        """Log a chunk of output of `stream` (1 stdout, 2 stderr)."""
        buf = self._partial[stream] + data
        lines = buf.split(b"\n")
        rest = lines.pop()
        entries: list[bytes] = []
        for line in lines:
            line += b"\n"
            while len(line) > PARTIAL_LIMIT:
                entries.append(line[:PARTIAL_LIMIT])
                line = line[PARTIAL_LIMIT:]
            entries.append(line)
        while len(rest) >= PARTIAL_LIMIT:
            entries.append(rest[:PARTIAL_LIMIT])
            rest = rest[PARTIAL_LIMIT:]
        self._partial[stream] = rest
        self._emit(stream, entries)

    def flush(self, stream: int) -> None:
        """The stream ended: log its unfinished last line."""
        rest, self._partial[stream] = self._partial[stream], b""
        if rest:
            self._emit(stream, [rest])

    def _emit(self, stream: int, entries: list[bytes]) -> None:
        if not entries or self._fd < 0:
            return
        now = rfc3339nano()
        name = _STREAMS[stream]
        out = bytearray()
        for entry in entries:
            record = (json.dumps({"log": entry.decode("utf-8", "replace"), "stream": name, "time": now},
                                 ensure_ascii=False) + "\n").encode()
            if self.max_size and self._size + len(out) + len(record) > self.max_size and (self._size or out):
                self._write(bytes(out))
                out.clear()
                self._rotate()
                if self._fd < 0:
                    return
            out += record
        self._write(bytes(out))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._fd >= 0:
            try:
                n = os.write(self._fd, view)
            except OSError:
                return  # a full or broken disk must not take the supervisor down; output is dropped
            view = view[n:]
            self._size += n

    def _rotate(self) -> None:
        """Rotate; on a failure (read-only or broken disk) keep appending to the file we have,
        or, if even that is gone, drop output (never raise into the supervisor's loop)."""
        try:
            if self.max_files <= 1:
                # a new empty file renamed over the log rather than truncating it in place: a
                # follower then sees the inode change (a size check misses a truncated file that
                # has grown back past its read offset) and reads the old file to its end first
                tmp = f"{self.path}.new"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o640)
                try:
                    os.replace(tmp, self.path)
                except OSError:
                    os.close(fd)
                    raise
            else:
                for n in range(self.max_files - 1, 0, -1):
                    src = self.path if n == 1 else f"{self.path}.{n - 1}"
                    try:
                        os.replace(src, f"{self.path}.{n}")
                    except FileNotFoundError:
                        pass
                fd = self._open()
        except OSError:
            return
        os.close(self._fd)
        self._fd = fd
        self._size = 0

    def close(self) -> None:
        for stream in (1, 2):
            self.flush(stream)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
