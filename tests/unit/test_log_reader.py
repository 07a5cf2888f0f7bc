"""LogReader: existing entries (tail, rotated files) and following (rotation, deletion, end)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from dockyard.services import logs as logs_module
from dockyard.services.logs import LogEntry, LogReader, rotated_files
from dockyard.shim.logger import JsonFileLogger


def texts(entries: list[LogEntry]) -> list[str]:
    return [e.data.decode() for e in entries]


def existing(path: str, tail: int | None = None) -> list[LogEntry]:
    reader = LogReader(path)
    try:
        return reader.existing(tail)
    finally:
        reader.close()


def lines(start: int, stop: int) -> list[str]:
    return [f"line {i}\n" for i in range(start, stop)]


def write_lines(log: JsonFileLogger, start: int, stop: int, stream: int = 1) -> None:
    for i in range(start, stop):
        log.write(stream, f"line {i}\n".encode())


def test_existing_and_tail(tmp_path: Path) -> None:
    path = str(tmp_path / "c.log")
    log = JsonFileLogger(path)
    write_lines(log, 0, 5)
    log.write(2, b"err\n")
    log.close()
    got = existing(path)
    assert texts(got) == lines(0, 5) + ["err\n"]
    assert got[-1].stream == "stderr" and got[0].stream == "stdout" and got[0].time.endswith("Z")
    assert texts(existing(path, tail=2)) == ["line 4\n", "err\n"]
    assert existing(path, tail=0) == []
    assert len(existing(path, tail=100)) == 6


def test_existing_of_a_missing_log(tmp_path: Path) -> None:
    assert existing(str(tmp_path / "none.log")) == []


def test_existing_across_rotated_files(tmp_path: Path) -> None:
    path = str(tmp_path / "c.log")
    log = JsonFileLogger(path, max_size=300, max_files=4)
    write_lines(log, 0, 14)
    log.close()
    assert len(rotated_files(path)) == 3
    # the oldest file was dropped: what is left is a gap-free suffix, oldest first
    got = texts(existing(path))
    first = int(got[0].split()[1])
    assert got == lines(first, 14) and first > 0
    assert texts(existing(path, tail=7)) == lines(7, 14)


def test_partial_json_line_waits(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    path.write_bytes(b'{"log":"a\\n","stream":"stdout","time":"t"}\n{"log":"b')
    reader = LogReader(str(path))
    assert texts(reader.existing()) == ["a\n"]
    with open(path, "ab") as f:
        f.write(b'\\n","stream":"stdout","time":"t"}\nnot json\n')

    async def rest() -> list[LogEntry]:
        return [e async for e in reader.follow(lambda: False)]

    assert texts(asyncio.run(rest())) == ["b\n"]


async def _follow_all(reader: LogReader, running: list[bool], out: list[LogEntry]) -> None:
    async for e in reader.follow(lambda: running[0]):
        out.append(e)


def test_follow_sees_new_entries_and_stops_after_draining(tmp_path: Path) -> None:
    path = str(tmp_path / "c.log")

    async def main() -> list[LogEntry]:
        log = JsonFileLogger(path)
        write_lines(log, 0, 3)
        reader = LogReader(path)
        assert texts(reader.existing()) == lines(0, 3)
        running = [True]
        out: list[LogEntry] = []
        task = asyncio.create_task(_follow_all(reader, running, out))
        await asyncio.sleep(0.1)
        write_lines(log, 3, 6)
        for _ in range(100):
            if len(out) == 3:
                break
            await asyncio.sleep(0.02)
        assert texts(out) == lines(3, 6)
        # written, then the process ends: the follower still reads these before returning
        write_lines(log, 6, 9)
        log.close()
        running[0] = False
        await asyncio.wait_for(task, 5)
        return out

    assert texts(asyncio.run(main())) == lines(3, 9)


def test_follow_across_rotations(tmp_path: Path) -> None:
    """Entries written to the old file before its rename and to the new file all arrive, in
    order, none twice; also when the writer rotates several times between two polls."""
    path = str(tmp_path / "c.log")

    async def main() -> list[LogEntry]:
        log = JsonFileLogger(path, max_size=400, max_files=50)
        write_lines(log, 0, 2)
        reader = LogReader(path)
        before = texts(reader.existing())
        assert before == lines(0, 2)
        running = [True]
        out: list[LogEntry] = []
        task = asyncio.create_task(_follow_all(reader, running, out))
        n = 2
        for burst in (1, 3, 7, 20, 2, 40):
            write_lines(log, n, n + burst)  # several rotations inside one burst
            n += burst
            await asyncio.sleep(logs_module.POLL_INTERVAL * (1 + burst % 3))
        log.close()
        running[0] = False
        await asyncio.wait_for(task, 5)
        assert n == 75
        return out

    assert texts(asyncio.run(main())) == lines(2, 75)


def test_follow_rotation_between_read_and_check(tmp_path: Path) -> None:
    """The race where the follower read the file, the writer then appended and rotated, and the
    follower only then noticed the rotation: the appended entries must not be skipped."""
    path = str(tmp_path / "c.log")
    log = JsonFileLogger(path, max_size=200, max_files=5)
    write_lines(log, 0, 1)
    reader = LogReader(path)
    assert texts(reader.existing()) == lines(0, 1)
    original = reader._rotated
    state = {"done": False}

    def rotated_after_writing() -> bool:
        if not state["done"]:
            state["done"] = True
            write_lines(log, 1, 4)  # fills the held file, rotates, starts the next one
            log.close()
        return original()

    reader._rotated = rotated_after_writing  # type: ignore[method-assign]

    async def main() -> list[LogEntry]:
        return [e async for e in reader.follow(lambda: False)]

    assert texts(asyncio.run(main())) == lines(1, 4)


def test_follow_keeps_reading_a_deleted_file(tmp_path: Path) -> None:
    path = str(tmp_path / "c.log")

    async def main() -> list[LogEntry]:
        log = JsonFileLogger(path)
        write_lines(log, 0, 2)
        reader = LogReader(path)
        assert texts(reader.existing()) == lines(0, 2)
        os.unlink(path)  # the container is removed while we follow
        write_lines(log, 2, 5)  # the writer still holds the file
        running = [True]
        out: list[LogEntry] = []
        task = asyncio.create_task(_follow_all(reader, running, out))
        await asyncio.sleep(0.2)
        write_lines(log, 5, 6)
        log.close()
        running[0] = False
        await asyncio.wait_for(task, 5)
        return out

    assert texts(asyncio.run(main())) == lines(2, 6)


def test_follow_a_log_that_does_not_exist_yet(tmp_path: Path) -> None:
    path = str(tmp_path / "c.log")

    async def main() -> list[LogEntry]:
        reader = LogReader(path)
        assert reader.existing() == []
        running = [True]
        out: list[LogEntry] = []
        task = asyncio.create_task(_follow_all(reader, running, out))
        await asyncio.sleep(0.1)
        log = JsonFileLogger(path)
        write_lines(log, 0, 3)
        log.close()
        await asyncio.sleep(0.2)
        running[0] = False
        await asyncio.wait_for(task, 5)
        return out

    assert texts(asyncio.run(main())) == lines(0, 3)


def test_follow_after_truncation(tmp_path: Path) -> None:
    """max_files=1: the log is truncated in place; the follower starts over at its beginning."""
    path = str(tmp_path / "c.log")

    async def main() -> list[LogEntry]:
        log = JsonFileLogger(path, max_size=200, max_files=1)
        write_lines(log, 0, 1)
        reader = LogReader(path)
        reader.existing()
        running = [True]
        out: list[LogEntry] = []
        task = asyncio.create_task(_follow_all(reader, running, out))
        await asyncio.sleep(0.1)
        write_lines(log, 1, 2)
        await asyncio.sleep(0.15)
        write_lines(log, 2, 4)  # replaced before line 2 (two entries fit in 200 bytes): the new
        # file grows back to the size of the old one, so only an inode check notices
        await asyncio.sleep(0.15)
        log.close()
        running[0] = False
        await asyncio.wait_for(task, 5)
        return out

    assert texts(asyncio.run(main())) == lines(1, 4)


def test_follow_stops_when_not_running_and_nothing_new(tmp_path: Path) -> None:
    path = str(tmp_path / "c.log")
    log = JsonFileLogger(path)
    write_lines(log, 0, 1)
    log.close()
    reader = LogReader(path)
    reader.existing()

    async def main() -> list[LogEntry]:
        return [e async for e in reader.follow(lambda: False)]

    assert asyncio.run(asyncio.wait_for(main(), 2)) == []
    assert reader._file is None  # closed
