"""Containers outlive dockyardd: kill -9 of the daemon with 20 running containers, then a restart.

All 20 are still running (same pid), attachable, and their logs are complete: the supervisor
kept copying their output while the daemon was dead, so each container's counter shows no gap.
"""

from __future__ import annotations

import os
import shutil
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from docker_engine import docker_cli  # noqa: E402
from dockyardd import Dockyardd, kill_daemon, launch, stop_dockyardd  # noqa: E402

pytestmark = [pytest.mark.root, pytest.mark.slow]

COUNT = 20
# every container prints a numbered line every 0.1 s, for ever
COUNTER = "i=0; while :; do echo line-$i; i=$((i+1)); sleep 0.1; done"
DEAD_FOR = 3.0  # seconds the daemon stays dead (about 30 lines per container meanwhile)


def _explain(d: Dockyardd, what: str) -> str:
    return f"{what}\n--- dockyardd log (tail) ---\n{d.log_tail(30)}"


def _numbers(logs: str) -> list[int]:
    out = []
    for line in logs.splitlines():
        assert line.startswith("line-"), f"unexpected log line {line!r}"
        out.append(int(line[5:]))
    return out


def _wait_for_lines(d: Dockyardd, cid: str, count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        r = d.docker("logs", cid, timeout=60)
        assert r.ok, _explain(d, str(r))
        numbers = _numbers(r.stdout)
        if len(numbers) >= count or time.monotonic() > deadline:
            return numbers
        time.sleep(0.1)


def _attach_lines(d: Dockyardd, cid: str, count: int, timeout: float = 15) -> list[int]:
    """The first `count` lines `docker attach` prints (then the CLI is killed: the container
    goes on, --sig-proxy=false)."""
    cli = subprocess.Popen([docker_cli(), "attach", "--no-stdin", "--sig-proxy=false", cid], env=d.env(),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert cli.stdout is not None
    numbers: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        os.set_blocking(cli.stdout.fileno(), False)
        buf = b""
        while len(numbers) < count and time.monotonic() < deadline:
            ready, _, _ = select.select([cli.stdout], [], [], 0.2)
            if not ready:
                continue
            chunk = os.read(cli.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            *done, buf = buf.split(b"\n")
            numbers += _numbers(b"\n".join(done).decode())
    finally:
        cli.kill()
        cli.wait(10)
        cli.stdout.close()
    return numbers


def test_kill_9_with_20_running_containers_then_restart(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("dockyardd needs root")
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    d = launch(tmp_path / "restart")
    try:
        d.docker("pull", "busybox").check()
        ids = []
        for _ in range(COUNT):
            r = d.docker("run", "-d", "busybox", "sh", "-c", COUNTER)
            assert r.ok, _explain(d, str(r))
            ids.append(r.stdout.strip())
        pids = {cid: d.inspect(cid)["State"]["Pid"] for cid in ids}
        assert all(pid > 0 for pid in pids.values()) and len(set(pids.values())) == COUNT
        before = {cid: len(_wait_for_lines(d, cid, 5)) for cid in ids}
        assert all(n >= 5 for n in before.values()), before

        assert kill_daemon(d, signal.SIGKILL) == -signal.SIGKILL
        died_at = time.monotonic()
        time.sleep(DEAD_FOR)
        dead = [cid for cid, pid in pids.items() if not os.path.exists(f"/proc/{pid}")]
        assert not dead, f"containers died with the daemon: {dead}"

        d = launch(d.dir)
        dead_for = time.monotonic() - died_at
        for cid in ids:
            state = d.inspect(cid)["State"]
            assert state["Running"] is True and state["Status"] == "running", _explain(d, f"{cid}: {state}")
            assert state["Pid"] == pids[cid], f"{cid}: pid {state['Pid']} != {pids[cid]}"

        # complete logs: a gap-free counter from 0, longer by what was printed while the daemon was dead
        for cid in ids:
            numbers = _wait_for_lines(d, cid, before[cid] + int(dead_for * 10 * 0.5))
            assert numbers == list(range(len(numbers))), f"{cid}: lines lost or repeated in the logs"
            assert len(numbers) >= before[cid] + int(dead_for * 10 * 0.5), \
                f"{cid}: {len(numbers)} lines after {dead_for:.1f} s dead, {before[cid]} before"

        # attachable: `docker attach` receives new output (the counter goes on where the logs are)
        for cid in ids:
            lines = _attach_lines(d, cid, 3)
            assert len(lines) >= 3 and lines == list(range(lines[0], lines[0] + len(lines))), \
                f"{cid}: docker attach gave {lines}"
            assert lines[0] >= before[cid], f"{cid}: attach replayed old output {lines}"

        r = d.docker("stop", "-t", "1", *ids, timeout=120)
        assert r.ok, _explain(d, str(r))
        for cid in ids:
            state = d.inspect(cid)["State"]
            assert state["Running"] is False and state["ExitCode"] == 137, f"{cid}: {state}"
            assert not os.path.exists(f"/proc/{pids[cid]}/cmdline") or \
                open(f"/proc/{pids[cid]}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
        r = d.docker("rm", *ids, timeout=120)
        assert r.ok, _explain(d, str(r))
    finally:
        problems = stop_dockyardd(d)
        shutil.rmtree(d.dir, ignore_errors=True)
    assert not problems, problems
