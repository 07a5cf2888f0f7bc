"""`docker exec`: processes run in a running container through the supervisor."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import InvalidArgument, NotFound, WrongState
from dockyard.services.containers import Container, ContainerService
from dockyard.services.events import EventService
from dockyard.services.userlookup import resolve_user

log = logging.getLogger("dockyard.services.exec")


@dataclass
class ExecRecord:
    id: str
    container_id: str
    cmd: list[str]
    env: list[str] = field(default_factory=list)
    user: str = ""
    working_dir: str = ""
    tty: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = True
    attach_stderr: bool = True
    privileged: bool = False
    detach_keys: str = ""
    console_size: tuple[int, int] | None = None
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0


class ExecService:
    def __init__(self, containers: ContainerService, events: EventService) -> None:
        self.containers = containers
        self.events = events
        self.execs: dict[str, ExecRecord] = {}
        self._done: dict[str, asyncio.Event] = {}

    def get(self, exec_id: str) -> ExecRecord:
        record = self.execs.get(exec_id)
        if record is None:
            raise NotFound(f"No such exec instance: {exec_id}")
        return record

    def forget(self, exec_id: str) -> None:
        """Drop a finished exec's record (health probes do, so that they do not pile up)."""
        record = self.execs.get(exec_id)
        if record is not None and not record.running:
            del self.execs[exec_id]
            self._done.pop(exec_id, None)

    def of(self, container_id: str) -> list[str]:
        return [e.id for e in self.execs.values() if e.container_id == container_id]

    def create(self, ref: str, config: dict[str, Any]) -> ExecRecord:
        c = self.containers.get(ref)
        if c.state.status != "running":
            if c.state.status == "paused":
                raise WrongState(f"Container {c.id} is paused, unpause the container before exec")
            raise WrongState(f"container {c.id} is not running")
        cmd = config.get("Cmd") or []
        if not cmd:
            raise InvalidArgument("No exec command specified")
        size = config.get("ConsoleSize")
        record = ExecRecord(secrets.token_hex(32), c.id, list(cmd), list(config.get("Env") or []),
                            config.get("User") or "", config.get("WorkingDir") or "", bool(config.get("Tty")),
                            bool(config.get("AttachStdin")), bool(config.get("AttachStdout")),
                            bool(config.get("AttachStderr")), bool(config.get("Privileged")),
                            # Go decodes JSON field names case-insensitively: docker-py sends "detachKeys"
                            config.get("DetachKeys") or config.get("detachKeys") or "",
                            (int(size[0]), int(size[1])) if size else None)
        self.execs[record.id] = record
        self.events.publish("container", f"exec_create: {' '.join(record.cmd)}", c.id,
                            {"name": c.name, "image": c.image, "execID": record.id})
        return record

    def _process(self, c: Container, record: ExecRecord) -> dict[str, Any]:
        with open(os.path.join(self.containers.bundle(c.id), "config.json")) as f:
            spec = json.load(f)
        process: dict[str, Any] = dict(spec.get("process") or {})
        process["args"] = record.cmd
        process["terminal"] = record.tty
        env = {e.split("=", 1)[0]: e for e in process.get("env") or []}
        for e in record.env:
            env[e.split("=", 1)[0]] = e
        process["env"] = list(env.values())
        if record.working_dir:
            process["cwd"] = record.working_dir
        if record.user:
            process["user"] = resolve_user(os.path.join(self.containers.bundle(c.id), "rootfs"), record.user)
        if record.console_size and record.tty:
            process["consoleSize"] = {"height": record.console_size[0], "width": record.console_size[1]}
        elif "consoleSize" in process:
            del process["consoleSize"]
        if record.privileged:
            caps = process.get("capabilities") or {}
            from dockyard.security.capabilities import last_cap, names_of

            names = names_of(set(range(last_cap() + 1)))
            process["capabilities"] = {k: names for k in ("bounding", "effective", "permitted")} | \
                {k: v for k, v in caps.items() if k not in ("bounding", "effective", "permitted")}
        return process

    async def start(self, exec_id: str, detach: bool, tty: bool | None = None,
                    console_size: tuple[int, int] | None = None) -> tuple[ExecRecord, Any, Any]:
        """Run it; unless detached, return the stdio streams (reader, writer) of the supervisor."""
        record = self.get(exec_id)
        if record.started:
            raise WrongState(f"Error: Exec command {exec_id} has already run")
        c = self.containers.get(record.container_id)
        if c.state.status != "running":
            raise WrongState(f"container {c.id} is not running")
        if tty is not None:
            record.tty = tty
        if console_size:
            record.console_size = console_size
        process = self._process(c, record)
        if record.working_dir and c.state.pid:
            # as for the container: a missing working directory is made (inside the container's root)
            from dockyard.services.containers import ensure_working_dir

            await asyncio.to_thread(ensure_working_dir, f"/proc/{c.state.pid}/root", record.working_dir)
        shim = await self.containers.shim()
        record.started = True
        record.running = True
        self._done[exec_id] = asyncio.Event()
        try:
            record.pid = await shim.exec(c.id, exec_id, process, record.tty, record.attach_stdin and not detach)
        except BaseException:
            record.running = False
            record.exit_code = 126
            self._done[exec_id].set()
            raise
        self.events.publish("container", f"exec_start: {' '.join(record.cmd)}", c.id,
                            {"name": c.name, "image": c.image, "execID": exec_id})
        asyncio.get_running_loop().create_task(self._monitor(record))
        if detach:
            return record, None, None
        reader, writer = await shim.attach(c.id, exec_id, stdin=record.attach_stdin, stdout=record.attach_stdout,
                                           stderr=record.attach_stderr)
        return record, reader, writer

    async def _monitor(self, record: ExecRecord) -> None:
        try:
            status = await (await self.containers.shim()).wait(record.container_id, record.id)
            record.exit_code = int(status.code)
        except Exception as e:  # noqa: BLE001 - recorded
            log.warning("exec %s: wait failed: %s", record.id[:12], e)
            if record.exit_code is None:
                record.exit_code = 126
        record.running = False
        record.pid = 0
        self._done[record.id].set()
        c = self.containers.containers.get(record.container_id)
        if c is not None:
            self.events.publish("container", "exec_die", c.id, {"name": c.name, "image": c.image, "execID": record.id,
                                                                "exitCode": str(record.exit_code)})

    async def wait(self, exec_id: str, timeout: float | None = None) -> ExecRecord:
        record = self.get(exec_id)
        done = self._done.get(exec_id)
        if done is not None:
            await asyncio.wait_for(done.wait(), timeout)
        return record

    async def resize(self, exec_id: str, height: int, width: int) -> None:
        record = self.get(exec_id)
        if not record.running:
            raise WrongState(f"exec {exec_id} is not running")
        await (await self.containers.shim()).resize(record.container_id, exec_id, height, width)
