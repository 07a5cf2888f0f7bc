"""Health checks: the image's HEALTHCHECK or the `--health-*` flags, run as execs in the container.

Docker's rules: a probe runs every Interval (StartInterval during the StartPeriod), is killed
after Timeout, and is healthy when it exits 0. After Retries failures in a row the container
is unhealthy; failures during the start period do not count (but a success ends the period).
The last five probes are kept (start, end, exit code, output up to 4 KiB) in State.Health,
and each status change is an event `health_status: <status>`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

from dockyard.errors import DockyardError, InvalidArgument
from dockyard.services.containers import Container, ContainerService, now_rfc3339

log = logging.getLogger("dockyard.services.health")

NANO = 1_000_000_000
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
KEEP_PROBES = 5
MAX_OUTPUT = 4096
STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"


def probe_command(test: list[str] | None) -> list[str] | None:
    """The argv of a probe, or None when there is no health check (none given, or NONE)."""
    if not test:
        return None
    kind = test[0]
    if kind == "NONE":
        return None
    if kind == "CMD":
        if len(test) < 2:
            raise InvalidArgument("Healthcheck CMD needs a command")
        return list(test[1:])
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    raise InvalidArgument(f"unknown Healthcheck test type {kind!r} (CMD, CMD-SHELL or NONE)")


def _seconds(value: Any, default: float) -> float:
    return int(value) / NANO if value else default


class HealthService:
    def __init__(self, containers: ContainerService, execs: Any) -> None:
        self.containers = containers
        self.execs = execs
        self._tasks: dict[str, asyncio.Task[None]] = {}
        containers.on_started.append(self.watch)

    def watch(self, c: Container) -> None:
        check = c.config.get("Healthcheck") or {}
        if probe_command(check.get("Test")) is None:
            return
        old = self._tasks.pop(c.id, None)
        if old is not None:
            old.cancel()
        c.state.health = {"Status": STARTING, "FailingStreak": 0, "Log": []}
        self._tasks[c.id] = asyncio.get_running_loop().create_task(self._run(c.id, c.state.started_at),
                                                                   name=f"health-{c.id[:12]}")

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    async def _run(self, cid: str, started_at: str) -> None:
        try:
            loop = asyncio.get_running_loop()
            began = loop.time()
            while True:
                c = self.containers.containers.get(cid)
                if c is None or c.state.started_at != started_at or c.state.status not in ("running", "paused"):
                    return
                check = c.config.get("Healthcheck") or {}
                in_start_period = loop.time() - began < _seconds(check.get("StartPeriod"), 0.0)
                if c.state.health and c.state.health.get("Status") == STARTING and in_start_period:
                    wait = _seconds(check.get("StartInterval"), DEFAULT_START_INTERVAL)
                else:
                    wait = _seconds(check.get("Interval"), DEFAULT_INTERVAL)
                await asyncio.sleep(wait)
                c = self.containers.containers.get(cid)
                if c is None or c.state.started_at != started_at or c.state.status != "running":
                    if c is not None and c.state.status == "paused":
                        continue
                    return
                await self._probe(c, check, loop.time() - began < _seconds(check.get("StartPeriod"), 0.0))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a broken monitor must not take the daemon down
            log.exception("container %s: health monitor failed", cid[:12])
        finally:
            if self._tasks.get(cid) is asyncio.current_task():
                del self._tasks[cid]

    async def _probe(self, c: Container, check: dict[str, Any], in_start_period: bool) -> None:
        argv = probe_command(check.get("Test"))
        assert argv is not None
        start = now_rfc3339()
        code, output = await self._exec(c, argv, _seconds(check.get("Timeout"), DEFAULT_TIMEOUT))
        health = c.state.health or {"Status": STARTING, "FailingStreak": 0, "Log": []}
        entries = list(health.get("Log") or [])
        entries.append({"Start": start, "End": now_rfc3339(), "ExitCode": code, "Output": output})
        health["Log"] = entries[-KEEP_PROBES:]
        old = health.get("Status")
        if code == 0:
            health["Status"], health["FailingStreak"] = HEALTHY, 0
        elif not (in_start_period and old == STARTING):
            health["FailingStreak"] = int(health.get("FailingStreak", 0)) + 1
            retries = int(check.get("Retries") or DEFAULT_RETRIES)
            if health["FailingStreak"] >= retries:
                health["Status"] = UNHEALTHY
        c.state.health = health
        self.containers.save(c)
        if health["Status"] != old:
            self.containers.events.publish("container", f"health_status: {health['Status']}", c.id,
                                           {"name": c.name, "image": c.image})

    async def _exec(self, c: Container, argv: list[str], timeout: float) -> tuple[int, str]:
        """Run one probe; (exit code, output). A probe that times out is killed: exit -1."""
        try:
            record = self.execs.create(c.id, {"Cmd": argv, "AttachStdout": True, "AttachStderr": True})
            record, reader, writer = await self.execs.start(record.id, detach=False)
        except DockyardError as e:
            return -1, f"health check could not run: {e}"
        output = bytearray()

        async def collect() -> None:
            while True:
                header = await reader.readexactly(8)
                data = await reader.readexactly(int.from_bytes(header[4:], "big"))
                if len(output) < MAX_OUTPUT:
                    output.extend(data[: MAX_OUTPUT - len(output)])

        try:
            try:
                await asyncio.wait_for(asyncio.gather(collect(), return_exceptions=True), timeout)
                await asyncio.wait_for(self.execs.wait(record.id), max(1.0, timeout))
            except asyncio.TimeoutError:
                if record.pid:
                    try:
                        os.kill(record.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                return -1, f"Health check exceeded timeout ({timeout:g}s)"
        finally:
            writer.close()
            if not record.running:
                self.execs.forget(record.id)
        code = record.exit_code if record.exit_code is not None else -1
        return code, output.decode("utf-8", "replace")
