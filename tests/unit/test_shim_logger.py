"""JsonFileLogger: Docker's json-file format, line splitting and rotation."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from dockyard.shim.logger import PARTIAL_LIMIT, JsonFileLogger
from dockyard.shim.protocol import rfc3339nano

RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def entries(path: Path | str) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


def logs(path: Path | str) -> list[str]:
    return [e["log"] for e in entries(path)]


def test_complete_lines_are_one_entry_each(tmp_path: Path) -> None:
    log = JsonFileLogger(str(tmp_path / "c.log"))
    log.write(1, b"one\ntwo\n")
    log.close()
    got = entries(tmp_path / "c.log")
    assert [e["log"] for e in got] == ["one\n", "two\n"]
    assert all(e["stream"] == "stdout" and set(e) == {"log", "stream", "time"} for e in got)


def test_partial_line_waits_for_its_end(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = JsonFileLogger(str(path))
    log.write(1, b"hel")
    assert path.read_bytes() == b""
    log.write(1, b"lo\nwor")
    assert logs(path) == ["hello\n"]
    log.write(1, b"ld\n")
    assert logs(path) == ["hello\n", "world\n"]
    log.close()


def test_stream_end_flushes_the_last_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = JsonFileLogger(str(path))
    log.write(2, b"no newline")
    log.flush(2)
    assert entries(path) == [{"log": "no newline", "stream": "stderr", "time": entries(path)[0]["time"]}]
    log.flush(2)  # nothing more
    assert len(entries(path)) == 1
    log.write(1, b"also")
    log.close()  # close flushes too
    assert logs(path) == ["no newline", "also"]


def test_stdout_and_stderr_partials_are_separate(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = JsonFileLogger(str(path))
    log.write(1, b"out-")
    log.write(2, b"err-")
    log.write(1, b"line\n")
    log.write(2, b"line\n")
    log.close()
    assert [(e["stream"], e["log"]) for e in entries(path)] == [("stdout", "out-line\n"), ("stderr", "err-line\n")]


def test_partial_limit_16k(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = JsonFileLogger(str(path))
    log.write(1, b"a" * (PARTIAL_LIMIT - 1))
    assert path.read_bytes() == b""  # below the limit: still waiting
    log.write(1, b"b")
    assert logs(path) == ["a" * (PARTIAL_LIMIT - 1) + "b"]  # at the limit: out, without a newline
    # a longer chunk without newline is cut into 16 KiB entries; the rest waits
    log.write(1, b"c" * (2 * PARTIAL_LIMIT + 10))
    assert logs(path)[1:] == ["c" * PARTIAL_LIMIT] * 2
    log.write(1, b"\n")
    assert logs(path)[3] == "c" * 10 + "\n"
    # a complete line longer than the limit: 16 KiB pieces, only the last one ends the line
    log.write(1, b"d" * (PARTIAL_LIMIT + 5) + b"\n")
    log.close()
    assert logs(path)[4:] == ["d" * PARTIAL_LIMIT, "ddddd\n"]
    assert all(len(e.encode()) <= PARTIAL_LIMIT for e in logs(path))


def test_time_is_rfc3339nano_utc(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = JsonFileLogger(str(path))
    log.write(1, b"x\n")
    log.close()
    stamp = entries(path)[0]["time"]
    assert RFC3339NANO.match(stamp), stamp
    assert rfc3339nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert rfc3339nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert rfc3339nano(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"


def test_invalid_utf8_and_unicode(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = JsonFileLogger(str(path))
    log.write(1, "héllo ☃\n".encode() + b"\xff\n")
    log.close()
    assert logs(path) == ["héllo ☃\n", "\ufffd\n"]


def test_appends_to_an_existing_log(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = JsonFileLogger(str(path))
    log.write(1, b"first\n")
    log.close()
    log = JsonFileLogger(str(path))
    log.write(1, b"second\n")
    log.close()
    assert logs(path) == ["first\n", "second\n"]


def _record_size(text: str) -> int:
    return len(json.dumps({"log": text, "stream": "stdout", "time": rfc3339nano()}).encode()) + 1


def test_rotation_names_and_oldest_dropped(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    size = _record_size("line-00\n")
    # room for two entries per file (time stamps may differ in length by a few bytes)
    log = JsonFileLogger(str(path), max_size=2 * size + 8, max_files=3)
    for i in range(10):
        log.write(1, f"line-{i:02d}\n".encode())
    log.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["c.log", "c.log.1", "c.log.2"]
    assert logs(path) == ["line-08\n", "line-09\n"]
    assert logs(f"{path}.1") == ["line-06\n", "line-07\n"]
    assert logs(f"{path}.2") == ["line-04\n", "line-05\n"]
    for name in names:
        assert os.path.getsize(tmp_path / name) <= 2 * size + 8


def test_rotation_within_one_chunk(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    size = _record_size("line-00\n")
    log = JsonFileLogger(str(path), max_size=2 * size + 8, max_files=5)
    log.write(1, b"".join(f"line-{i:02d}\n".encode() for i in range(6)))
    log.close()
    assert logs(f"{path}.2") + logs(f"{path}.1") + logs(path) == [f"line-{i:02d}\n" for i in range(6)]


def test_max_files_1_truncates(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    size = _record_size("line-00\n")
    log = JsonFileLogger(str(path), max_size=2 * size + 8, max_files=1)
    for i in range(5):
        log.write(1, f"line-{i:02d}\n".encode())
    log.close()
    assert os.listdir(tmp_path) == ["c.log"]
    assert logs(path) == ["line-04\n"]


def test_an_entry_bigger_than_max_size_still_written(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = JsonFileLogger(str(path), max_size=10, max_files=2)
    log.write(1, b"a long line that does not fit\n")
    log.write(1, b"another\n")
    log.close()
    assert logs(f"{path}.1") == ["a long line that does not fit\n"]
    assert logs(path) == ["another\n"]


def test_no_size_limit_never_rotates(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = JsonFileLogger(str(path), max_size=0, max_files=3)
    for i in range(1000):
        log.write(1, b"x" * 100 + b"\n")
    log.close()
    assert os.listdir(tmp_path) == ["c.log"] and len(logs(path)) == 1000


def test_full_disk_drops_output_without_raising(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    log = JsonFileLogger("/dev/full")
    log.write(1, b"lost\n")
    log.write(2, b"lost too")
    log.close()


def test_rotation_failure_keeps_logging(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores directory permissions: make the rename target a non-empty directory instead
        (tmp_path / "logs").mkdir()
        path = tmp_path / "logs" / "c.log"
        (tmp_path / "logs" / "c.log.1").mkdir()
        (tmp_path / "logs" / "c.log.1" / "x").write_text("block")
    else:
        (tmp_path / "logs").mkdir()
        path = tmp_path / "logs" / "c.log"
    log = JsonFileLogger(str(path), max_size=_record_size("line-00\n") + 4, max_files=2)
    log.write(1, b"line-00\n")
    if os.geteuid() != 0:
        os.chmod(tmp_path / "logs", 0o500)
    try:
        log.write(1, b"line-01\n")  # must rotate, cannot: no exception, the entry is kept
        log.write(1, b"line-02\n")
        log.close()
    finally:
        os.chmod(tmp_path / "logs", 0o700)
    assert logs(path) == ["line-00\n", "line-01\n", "line-02\n"]


def test_unwritable_after_close_is_harmless(tmp_path: Path) -> None:
    log = JsonFileLogger(str(tmp_path / "c.log"))
    log.close()
    log.write(1, b"after close\n")
    log.flush(1)
    log.close()
    assert (tmp_path / "c.log").read_bytes() == b""
