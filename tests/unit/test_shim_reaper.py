"""The supervisor's Reaper: exits handed to watchers, also when reaped before the watch."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from dockyard.shim import supervisor
from dockyard.shim.supervisor import Reaper


def _spawn(code: int) -> int:
    return os.posix_spawn("/bin/sh", ["sh", "-c", f"exit {code}"], {})


def _wait_zombie(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        time.sleep(0.01)
    raise AssertionError(f"{pid} did not exit")


def test_exit_before_and_after_the_watch() -> None:
    async def main() -> None:
        reaper = Reaper(asyncio.get_running_loop())
        early = _spawn(3)
        _wait_zombie(early)
        reaper.reap()  # nobody watches it yet
        code, exited_at = await asyncio.wait_for(reaper.watch(early), 1)
        assert code == 3 and exited_at.endswith("Z")
        late = os.posix_spawn("/bin/sleep", ["sleep", "10"], {})
        fut = reaper.watch(late)
        assert reaper.watch(late) is fut
        os.kill(late, signal.SIGKILL)
        _wait_zombie(late)
        reaper.reap()
        assert (await asyncio.wait_for(fut, 1))[0] == 128 + signal.SIGKILL

    asyncio.run(main())


def test_an_old_unclaimed_exit_is_not_given_to_a_new_process() -> None:
    """A pid reaped long ago (an orphan nobody watched) may be reused: its old status must not
    make the new process look exited."""
    async def main() -> None:
        reaper = Reaper(asyncio.get_running_loop())
        pid = _spawn(5)
        _wait_zombie(pid)
        reaper.reap()
        now = time.monotonic()
        reaper.clock = lambda: now + supervisor.UNCLAIMED_MAX_AGE + 1
        fut = reaper.watch(pid)
        await asyncio.sleep(0.05)
        assert not fut.done()
        fut.cancel()

    asyncio.run(main())
