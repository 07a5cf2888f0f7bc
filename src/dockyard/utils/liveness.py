"""Owner tokens that outlive a crash: "<pid>.<start time>" names a live process or a dead one.

Temporary state (an ingest, an extraction) carries its owner's token in its name; recovery
after a crash removes the state whose owner is gone. The start time makes a recycled PID
look like the different process it is.
"""

from __future__ import annotations

import os


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    if rest[0] in ("Z", "X"):
        return None
    return rest[19]


def owner_token(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}.{_start_time(pid) or 0}"


def owner_alive(token: str) -> bool:
    pid_text, _, start = token.partition(".")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    return pid > 0 and _start_time(pid) == start
