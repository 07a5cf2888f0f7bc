"""The Docker API layer without a kernel: routing, version negotiation, error mapping, events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from dockyard.daemon.api.docker.app import Backend, build_app
from dockyard.daemon.api.docker.errors import status_for
from dockyard.daemon.api.docker.params import timestamp
from dockyard.daemon.api.docker.version import check_version
from dockyard.errors import (
    AlreadyExists,
    DockyardError,
    InvalidArgument,
    InvalidSpec,
    NotFound,
    NotImplementedFeature,
    SystemFailure,
    WrongState,
)
from dockyard.services.events import EventService
from dockyard.services.system import SystemService


class FakeImages:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    async def list(self, dangling: bool | None = None) -> list[Any]:
        return []

    async def details(self, name: str) -> Any:
        assert self.error is not None
        raise self.error


def _backend(tmp_path: Any, images: Any = None) -> Backend:
    return Backend(system=SystemService(str(tmp_path), str(tmp_path / "exec"), "dockyard-runtime",
                                        {"dockyard-runtime": "/bin/true"}),
                   events=EventService(), images=images or FakeImages())


def _run(backend: Backend, body: Callable[[TestClient], Awaitable[None]]) -> None:
    async def main() -> None:
        client = TestClient(TestServer(build_app(backend)))
        await client.start_server()
        try:
            await body(client)
        finally:
            await client.close()

    asyncio.run(main())


@pytest.mark.parametrize("error,status", [
    (NotFound("x"), 404), (AlreadyExists("x"), 409), (WrongState("x"), 409), (InvalidArgument("x"), 400),
    (InvalidSpec("x"), 400), (NotImplementedFeature("x"), 400), (SystemFailure("x"), 500),
    (DockyardError("x"), 500), (RuntimeError("x"), 500),
])
def test_error_mapping(error: Exception, status: int) -> None:
    assert status_for(error) == status


def test_version_bounds() -> None:
    assert check_version(None) == "1.45"
    assert check_version("1.24") == "1.24"
    assert check_version("1.45") == "1.45"
    with pytest.raises(InvalidArgument, match="client version 1.23 is too old. Minimum supported API version is 1.24"):
        check_version("1.23")
    with pytest.raises(InvalidArgument, match="client version 1.46 is too new. Maximum supported API version is 1.45"):
        check_version("1.46")


def test_ping_headers_and_prefixes(tmp_path: Any) -> None:
    async def body(client: TestClient) -> None:
        for path in ("/_ping", "/v1.24/_ping", "/v1.45/_ping"):
            r = await client.get(path)
            assert r.status == 200 and await r.text() == "OK"
            assert r.headers["Api-Version"] == "1.45"
            assert r.headers["OSType"] == "linux"
            assert r.headers["Builder-Version"] and r.headers["Docker-Experimental"] == "false"
            assert "no-cache" in r.headers["Cache-Control"]
        r = await client.head("/_ping")
        assert r.status == 200 and r.headers["Api-Version"] == "1.45"

    _run(_backend(tmp_path), body)


def test_version_rejects_old_and_new(tmp_path: Any) -> None:
    async def body(client: TestClient) -> None:
        r = await client.get("/v1.12/version")
        assert r.status == 400
        assert (await r.json())["message"].startswith("client version 1.12 is too old")
        r = await client.get("/v1.99/info")
        assert r.status == 400
        assert "too new" in (await r.json())["message"]
        r = await client.get("/v1.45/version")
        v = await r.json()
        assert r.status == 200 and v["ApiVersion"] == "1.45" and v["MinAPIVersion"] == "1.24"
        assert v["Os"] == "linux" and v["KernelVersion"] and v["Components"][0]["Name"] == "Engine"

    _run(_backend(tmp_path), body)


def test_unknown_route_is_json_404(tmp_path: Any) -> None:
    async def body(client: TestClient) -> None:
        r = await client.get("/v1.45/nothing/here")
        assert r.status == 404
        assert (await r.json()) == {"message": "page not found"}

    _run(_backend(tmp_path), body)


@pytest.mark.parametrize("error,status", [(NotFound("No such image: x"), 404), (WrongState("conflict"), 409),
                                          (InvalidArgument("bad"), 400), (SystemFailure("boom"), 500)])
def test_service_errors_become_messages(tmp_path: Any, error: Exception, status: int) -> None:
    async def body(client: TestClient) -> None:
        r = await client.get("/v1.41/images/localhost:5000/a/b:1/json")
        assert r.status == status
        assert (await r.json()) == {"message": str(error)}

    _run(_backend(tmp_path, FakeImages(error)), body)


def test_info_warns_when_the_default_bridge_is_off(tmp_path: Any) -> None:
    backend = _backend(tmp_path)
    backend.system.bridge = "none"

    async def body(client: TestClient) -> None:
        info = await (await client.get("/info")).json()
        assert any("loopback" in w for w in info["Warnings"])
        assert info["DefaultRuntime"] == "dockyard-runtime" and info["OSType"] == "linux"
        backend.system.bridge = "dyd0"
        info = await (await client.get("/info")).json()
        assert not info["Warnings"]

    _run(backend, body)


def test_events_since_until_and_filters(tmp_path: Any) -> None:
    backend = _backend(tmp_path)
    backend.events.publish("container", "create", "a" * 64, {"name": "one"})
    backend.events.publish("image", "tag", "sha256:1", {"name": "busybox:x"})
    backend.events.publish("container", "start", "a" * 64, {"name": "one"})

    async def body(client: TestClient) -> None:
        import time

        soon = str(time.time() + 0.2)
        r = await client.get("/events", params={"since": "0", "until": soon,
                                                "filters": json.dumps({"type": ["container"]})})
        got = [json.loads(line) for line in (await r.text()).splitlines()]
        assert [e["Action"] for e in got] == ["create", "start"]
        assert got[0]["Actor"]["Attributes"]["name"] == "one" and got[0]["status"] == "create"
        r = await client.get("/events", params={"since": "0", "until": soon,
                                                "filters": json.dumps({"event": {"tag": True}})})
        assert [json.loads(line)["Action"] for line in (await r.text()).splitlines()] == ["tag"]

    backend_until = backend

    async def live(client: TestClient) -> None:
        import time

        task = asyncio.ensure_future(client.get("/events", params={"until": str(time.time() + 1.0)}))
        await asyncio.sleep(0.3)
        backend_until.events.publish("container", "die", "b" * 64, {})
        r = await task
        assert [json.loads(line)["Action"] for line in (await r.text()).splitlines()] == ["die"]

    _run(backend, body)
    _run(backend, live)


def test_time_parameters() -> None:
    assert timestamp("1700000000.5") == 1700000000.5
    assert timestamp("2023-11-14T22:13:20Z") == 1700000000.0
    assert timestamp("10m", now=1000.0) == 400.0
    with pytest.raises(InvalidArgument):
        timestamp("yesterday")
