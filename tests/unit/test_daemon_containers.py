"""The container service and its API handlers over a fake supervisor, fake images and no mounts.

The fake supervisor follows the ShimClient contract (docs/daemon-design.md): a process "runs"
the argv of the spec that the fake spec generator wrote (echo, sh -c 'exit N', sleep), writes
the json-file log and exits, or waits for a signal.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import sys
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from dockyard.daemon.api.docker.app import Backend, build_app
from dockyard.daemon.config import DaemonConfig
from dockyard.errors import NotFound
from dockyard.services import containers as containers_mod
from dockyard.services.containers import ContainerService, now_rfc3339
from dockyard.services.events import EventService
from dockyard.services.exec import ExecService


@dataclass
class ExitStatus:
    code: int
    exited_at: str
    oom_killed: bool = False


@dataclass
class ShimState:
    id: str
    status: str
    pid: int
    exit: ExitStatus | None
    tty: bool = False
    stdin: bool = False


class FakeShim:
    def __init__(self) -> None:
        self.states: dict[str, ShimState] = {}
        self.bundles: dict[str, tuple[str, str]] = {}
        self.exited: dict[str, asyncio.Future[ExitStatus]] = {}
        self.next_pid = 1000

    async def create(self, id: str, *, bundle: str, runtime: str, runtime_root: str, tty: bool, stdin: bool,
                     log_path: str, log_max_size: int, log_max_files: int) -> int:
        if id in self.states:
            raise RuntimeError(f"{id} exists")
        self.next_pid += 1
        self.states[id] = ShimState(id, "created", self.next_pid, None, tty, stdin)
        self.bundles[id] = (bundle, log_path)
        self.exited[id] = asyncio.get_running_loop().create_future()
        return self.next_pid

    def _exit(self, id: str, code: int) -> None:
        st = self.states[id]
        st.status, st.exit = "stopped", ExitStatus(code, now_rfc3339())
        if not self.exited[id].done():
            self.exited[id].set_result(st.exit)

    def _log(self, id: str, text: str, stream: str = "stdout") -> None:
        with open(self.bundles[id][1], "a") as f:
            f.write(json.dumps({"log": text, "stream": stream, "time": now_rfc3339()}) + "\n")

    async def start(self, id: str) -> None:
        st = self.states[id]
        st.status = "running"
        with open(os.path.join(self.bundles[id][0], "config.json")) as f:
            argv = json.load(f)["process"]["args"]
        if argv[0] == "echo":
            self._log(id, " ".join(argv[1:]) + "\n")
            self._exit(id, 0)
        elif argv[:2] == ["sh", "-c"] and argv[2].startswith("exit "):
            self._exit(id, int(argv[2].split()[1]))

    async def kill(self, id: str, signal: int, all: bool = False) -> None:
        st = self.states.get(id)
        if st is None:
            raise NotFound(id)
        if st.status in ("running", "paused"):
            self._exit(id, 128 + signal)

    async def pause(self, id: str) -> None:
        self.states[id].status = "paused"

    async def resume(self, id: str) -> None:
        self.states[id].status = "running"

    async def wait(self, id: str, exec_id: str | None = None) -> ExitStatus:
        return await asyncio.shield(self.exited[id])

    async def state(self, id: str) -> ShimState:
        if id not in self.states:
            raise NotFound(f"no container {id}")
        return self.states[id]

    async def list(self) -> list[ShimState]:
        return list(self.states.values())

    async def delete(self, id: str, force: bool = False) -> None:
        self.states.pop(id, None)

    async def stats(self, id: str) -> dict[str, Any]:
        return {"cpu": {"usage": {"total": 5}}, "memory": {"usage": {"usage": 1024, "limit": 4096}}, "pids": {"current": 1}}


class FakeStore:
    def __init__(self) -> None:
        self.prepared: set[str] = set()
        self.users: Any = None

    def prepare_container(self, cid: str, image: str) -> list[Any]:
        self.prepared.add(cid)
        return []

    def remove_container(self, cid: str) -> None:
        self.prepared.discard(cid)


class FakeImages:
    def __init__(self) -> None:
        self.store = FakeStore()
        self.image = types.SimpleNamespace(id="sha256:" + "ab" * 32)

    def set_users(self, users: Any) -> None:
        self.store.users = users

    async def resolve(self, name: str) -> Any:
        if name != "busybox":
            raise NotFound(f"No such image: {name}")
        return self.image

    async def details(self, name: str) -> Any:
        config = types.SimpleNamespace(raw={"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}})
        return types.SimpleNamespace(image=self.image, config=config, container_config=config.raw["config"])

    async def list(self, dangling: bool | None = None) -> list[Any]:
        return []


def fake_build_spec(container_id: str, config: dict[str, Any], host_config: dict[str, Any], image_config: Any,
                    rootfs: str, files: dict[str, str], cgroup_parent: str, netns_path: Any, init_path: Any,
                    joined: dict[str, str] | None = None) -> dict[str, Any]:
    assert not joined  # these tests share no namespaces between containers
    argv = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    return {"ociVersion": "1.0.2", "process": {"args": argv, "env": config.get("Env") or [], "cwd": "/"},
            "root": {"path": rootfs}, "hostname": config.get("Hostname")}


@pytest.fixture
def env(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Backend, FakeShim]:
    spec_module = types.ModuleType("dockyard.services.specgen")
    spec_module.build_spec = fake_build_spec  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "dockyard.services.specgen", spec_module)
    import dockyard.services

    monkeypatch.setattr(dockyard.services, "specgen", spec_module, raising=False)

    async def mount(self: ContainerService, c: Any) -> str:
        rootfs = os.path.join(self.bundle(c.id), "rootfs")
        os.makedirs(rootfs, exist_ok=True)
        return rootfs

    async def unmount(self: ContainerService, cid: str) -> None:
        return None

    monkeypatch.setattr(ContainerService, "mount_rootfs", mount)
    monkeypatch.setattr(ContainerService, "unmount_rootfs", unmount)
    shim = FakeShim()

    async def fake_shim(self: ContainerService) -> FakeShim:
        return shim

    monkeypatch.setattr(ContainerService, "shim", fake_shim)
    cfg = DaemonConfig(data_root=str(tmp_path / "data"), exec_root=str(tmp_path / "exec"),
                       runtimes={"dockyard-runtime": "/bin/true"})
    events = EventService()
    service = ContainerService(cfg, FakeImages(), events)  # type: ignore[arg-type]
    return Backend(events=events, images=service.images, containers=service, execs=ExecService(service, events)), shim


def run(backend: Backend, body: Callable[[TestClient], Awaitable[None]]) -> None:
    async def main() -> None:
        client = TestClient(TestServer(build_app(backend)))
        await client.start_server()
        try:
            await body(client)
        finally:
            await client.close()
            await backend.containers.close()

    asyncio.run(main())


async def create(client: TestClient, cmd: list[str], name: str | None = None, **extra: Any) -> str:
    params = {"name": name} if name else {}
    r = await client.post("/v1.45/containers/create", params=params,
                          json={"Image": "busybox", "Cmd": cmd, **extra})
    assert r.status == 201, await r.text()
    cid: str = (await r.json())["Id"]
    return cid


def frames(data: bytes) -> list[tuple[int, bytes]]:
    out = []
    while data:
        kind, size = struct.unpack(">BxxxL", data[:8])
        out.append((kind, data[8:8 + size]))
        data = data[8 + size:]
    return out


def test_create_start_wait_logs_remove(env: tuple[Backend, FakeShim]) -> None:
    backend, shim = env

    async def body(client: TestClient) -> None:
        cid = await create(client, ["echo", "hi"], name="first")
        waiter = asyncio.ensure_future(client.post(f"/containers/{cid}/wait", params={"condition": "next-exit"}))
        await asyncio.sleep(0.05)
        assert (await client.post("/containers/first/start")).status == 204
        r = await waiter
        assert (await r.json()) == {"StatusCode": 0, "Error": None}
        info = await (await client.get(f"/containers/{cid[:10]}/json")).json()
        assert info["State"]["Status"] == "exited" and info["Name"] == "/first" and info["Path"] == "echo"
        assert info["Config"]["Env"] == ["PATH=/bin"] and info["Config"]["Hostname"] == cid[:12]
        logs = await (await client.get(f"/containers/{cid}/logs", params={"stdout": "1"})).read()
        assert frames(logs) == [(1, b"hi\n")]
        r = await client.get("/containers/json", params={"all": "1", "filters": json.dumps({"status": ["exited"]})})
        assert [c["Names"] for c in await r.json()] == [["/first"]]
        assert (await (await client.get("/containers/json")).json()) == []
        assert (await client.delete(f"/containers/{cid}")).status == 204
        assert (await client.get(f"/containers/{cid}/json")).status == 404
        actions = [e.action for e in backend.events.history()]
        assert actions == ["create", "start", "die", "destroy"]

    run(backend, body)


def test_name_conflict_and_bad_requests(env: tuple[Backend, FakeShim]) -> None:
    backend, _ = env

    async def body(client: TestClient) -> None:
        await create(client, ["sleep", "1"], name="dup")
        r = await client.post("/containers/create", params={"name": "dup"}, json={"Image": "busybox"})
        assert r.status == 409 and "already in use" in (await r.json())["message"]
        r = await client.post("/containers/create", json={"Image": "nope"})
        assert r.status == 404
        r = await client.post("/containers/create", json={"Image": "busybox", "HostConfig": {
            "RestartPolicy": {"Name": "sometimes"}}})
        assert r.status == 400
        r = await client.post("/containers/create", json={"Image": "busybox", "HostConfig": {
            "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}, "NetworkMode": "mynet"}})
        assert r.status == 400  # this backend has no network service: refused, never dropped
        message = (await r.json())["message"]
        assert "HostConfig.PortBindings" in message and "HostConfig.NetworkMode=mynet" in message
        r = await client.post("/containers/nothere/start")
        assert r.status == 404 and (await r.json())["message"] == "No such container: nothere"

    run(backend, body)


def test_exit_code_stop_kill_and_remove_running(env: tuple[Backend, FakeShim]) -> None:
    backend, shim = env

    async def body(client: TestClient) -> None:
        cid = await create(client, ["sh", "-c", "exit 3"])
        await client.post(f"/containers/{cid}/start")
        r = await client.post(f"/containers/{cid}/wait")
        assert (await r.json())["StatusCode"] == 3
        long = await create(client, ["sleep", "60"])
        await client.post(f"/containers/{long}/start")
        r = await client.delete(f"/containers/{long}")
        assert r.status == 409
        assert (await client.post(f"/containers/{long}/stop", params={"t": "1"})).status == 204
        info = await (await client.get(f"/containers/{long}/json")).json()
        assert info["State"]["ExitCode"] == 128 + signal.SIGTERM
        assert (await client.post(f"/containers/{long}/stop")).status == 304
        r = await client.post(f"/containers/{long}/kill")
        assert r.status == 409
        assert (await client.post(f"/containers/{long}/start")).status == 204  # re-created in the supervisor
        assert (await client.post(f"/containers/{long}/kill", params={"signal": "KILL"})).status == 204
        r = await client.post(f"/containers/{long}/wait")
        assert (await r.json())["StatusCode"] == 137
        assert (await client.delete(f"/containers/{long}", params={"force": "1"})).status == 204

    run(backend, body)


def test_auto_remove_and_wait_removed(env: tuple[Backend, FakeShim]) -> None:
    backend, _ = env

    async def body(client: TestClient) -> None:
        cid = await create(client, ["echo", "bye"], HostConfig={"AutoRemove": True})
        waiter = asyncio.ensure_future(client.post(f"/containers/{cid}/wait", params={"condition": "removed"}))
        await asyncio.sleep(0.05)
        await client.post(f"/containers/{cid}/start")
        assert (await (await waiter).json())["StatusCode"] == 0
        assert (await client.get(f"/containers/{cid}/json")).status == 404
        assert not backend.images.store.prepared

    run(backend, body)


def test_restart_policy_on_failure(env: tuple[Backend, FakeShim], monkeypatch: pytest.MonkeyPatch) -> None:
    backend, _ = env
    monkeypatch.setattr(containers_mod, "BACKOFF_START", 0.01)

    async def body(client: TestClient) -> None:
        cid = await create(client, ["sh", "-c", "exit 1"], HostConfig={"RestartPolicy": {"Name": "on-failure",
                                                                                           "MaximumRetryCount": 2}})
        await client.post(f"/containers/{cid}/start")
        for _ in range(100):
            info = await (await client.get(f"/containers/{cid}/json")).json()
            if info["RestartCount"] == 2 and info["State"]["Status"] == "exited":
                break
            await asyncio.sleep(0.02)
        assert info["RestartCount"] == 2 and info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 1

    run(backend, body)


def test_restore_after_restart(env: tuple[Backend, FakeShim]) -> None:
    backend, shim = env

    async def body(client: TestClient) -> None:
        running = await create(client, ["sleep", "60"], name="keeps")
        await client.post(f"/containers/{running}/start")
        done = await create(client, ["sleep", "60"], name="dies")
        await client.post(f"/containers/{done}/start")
        service = backend.containers
        await service.close()
        shim._exit(done, 9)  # it died while the daemon was away
        again = ContainerService(service.daemon_config, service.images, EventService())
        await again.restore()
        assert again.get("keeps").state.status == "running" and again.get("keeps").state.pid == shim.states[running].pid
        assert again.get("dies").state.status == "exited" and again.get("dies").state.exit_code == 9
        # a create cut short before its record was written leaves a directory: restore removes it
        half = os.path.join(service.root, "f" * 64)
        os.makedirs(os.path.join(half, "bundle"))
        third = ContainerService(service.daemon_config, service.images, EventService())
        await third.restore()
        assert not os.path.exists(half) and "f" * 64 not in third.containers
        await third.close()
        await again.kill("keeps")
        await asyncio.sleep(0.05)
        assert again.get("keeps").state.status == "exited"
        await again.close()

    run(backend, body)


def test_stats_one_shot_and_rename(env: tuple[Backend, FakeShim]) -> None:
    backend, _ = env

    async def body(client: TestClient) -> None:
        cid = await create(client, ["sleep", "60"], name="old")
        await client.post(f"/containers/{cid}/start")
        stats = await (await client.get(f"/containers/{cid}/stats", params={"stream": "false"})).json()
        assert stats["memory_stats"]["usage"] == 1024 and stats["cpu_stats"]["cpu_usage"]["total_usage"] == 5
        assert (await client.post(f"/containers/{cid}/rename", params={"name": "new"})).status == 204
        assert (await (await client.get("/containers/new/json")).json())["Name"] == "/new"
        await client.delete(f"/containers/{cid}", params={"force": "1"})

    run(backend, body)


class EchoWriter:
    """The supervisor's side of an attach to `cat`: stdin comes back as stdout frames; EOF ends it."""

    def __init__(self, out: asyncio.StreamReader) -> None:
        self.out = out
        self.eof = False

    def write(self, data: bytes) -> None:
        self.out.feed_data(struct.pack(">BxxxL", 1, len(data)) + data)

    async def drain(self) -> None:
        return None

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True
        self.out.feed_eof()

    def close(self) -> None:
        return None


def test_attach_hijack_with_stdin_half_close(env: tuple[Backend, FakeShim]) -> None:
    """101 UPGRADED, raw bytes both ways, and the client's half-close reaching the container's stdin
    (aiohttp would close the connection on it, or parse the raw bytes as HTTP, without the hijack)."""
    backend, shim = env
    writers: list[EchoWriter] = []

    async def attach(id: str, exec_id: str | None, *, stdin: bool, stdout: bool, stderr: bool,
                     stdin_eof: bool = True) -> Any:
        assert not stdin_eof  # the daemon closes stdin itself (close_stdin), so that a detach does not
        out = asyncio.StreamReader()
        writers.append(EchoWriter(out))
        return out, writers[-1]

    async def close_stdin(id: str, exec_id: str | None = None) -> None:
        writers[-1].write_eof()

    shim.attach = attach  # type: ignore[attr-defined]
    shim.close_stdin = close_stdin  # type: ignore[attr-defined]

    async def body(client: TestClient) -> None:
        cid = await create(client, ["cat"], OpenStdin=True, AttachStdin=True, StdinOnce=True)
        await client.post(f"/containers/{cid}/start")
        host, port = client.server.host, client.server.port
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"POST /v1.45/containers/{cid}/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n"
                     "Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 UPGRADED"), head
        assert b"application/vnd.docker.multiplexed-stream" in head
        writer.write(b"GET / HTTP/1.1\r\n\r\n")  # raw bytes, never parsed as HTTP
        first = await asyncio.wait_for(reader.readexactly(8 + 18), 5)
        assert frames(first) == [(1, b"GET / HTTP/1.1\r\n\r\n")]
        writer.write_eof()
        rest = await asyncio.wait_for(reader.read(), 5)
        assert rest == b""
        assert writers[0].eof
        writer.close()
        await client.delete(f"/containers/{cid}", params={"force": "1"})

    run(backend, body)


def test_exec_create_start_inspect(env: tuple[Backend, FakeShim]) -> None:
    backend, shim = env
    done: asyncio.Future[ExitStatus] | None = None
    processes: list[dict[str, Any]] = []

    async def exec_(id: str, exec_id: str, process: dict[str, Any], tty: bool, stdin: bool) -> int:
        nonlocal done
        processes.append(process)
        done = asyncio.get_running_loop().create_future()
        return 4242

    async def attach(id: str, exec_id: str | None, *, stdin: bool, stdout: bool, stderr: bool,
                     stdin_eof: bool = True) -> Any:
        out = asyncio.StreamReader()
        out.feed_data(struct.pack(">BxxxL", 1, 3) + b"ex\n")
        out.feed_eof()
        assert done is not None
        done.set_result(ExitStatus(4, now_rfc3339()))
        return out, EchoWriter(asyncio.StreamReader())

    original_wait = shim.wait

    async def wait(id: str, exec_id: str | None = None) -> ExitStatus:
        if exec_id is None:
            return await original_wait(id)
        assert done is not None
        return await done

    shim.exec, shim.attach, shim.wait = exec_, attach, wait  # type: ignore[method-assign,attr-defined]

    async def body(client: TestClient) -> None:
        cid = await create(client, ["sleep", "60"])
        r = await client.post(f"/containers/{cid}/exec", json={"Cmd": ["true"]})
        assert r.status == 409  # not running yet
        await client.post(f"/containers/{cid}/start")
        eid = (await (await client.post(f"/containers/{cid}/exec", json={
            "Cmd": ["sh", "-c", "echo ex; exit 4"], "AttachStdout": True, "Env": ["A=1"]})).json())["Id"]
        r = await client.post(f"/exec/{eid}/start", json={"Detach": False, "Tty": False})
        assert frames(await r.read()) == [(1, b"ex\n")]
        for _ in range(50):
            info = await (await client.get(f"/exec/{eid}/json")).json()
            if not info["Running"]:
                break
            await asyncio.sleep(0.02)
        assert info["ExitCode"] == 4 and info["ContainerID"] == cid
        assert processes[0]["args"] == ["sh", "-c", "echo ex; exit 4"] and "A=1" in processes[0]["env"]
        assert (await client.get("/exec/nope/json")).status == 404
        await client.delete(f"/containers/{cid}", params={"force": "1"})

    run(backend, body)
