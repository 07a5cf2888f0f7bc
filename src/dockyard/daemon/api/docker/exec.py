"""/containers/{id}/exec and /exec/{id}/...: create, start (hijacked or detached), inspect, resize."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from dockyard.daemon.api.docker import hijack
from dockyard.daemon.api.docker.app import Router, backend, json_response
from dockyard.daemon.api.docker.params import integer, json_body
from dockyard.errors import DockyardError

EXIT_GRACE = 5.0  # seconds to wait, after the output ends, for the exit status


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    record = backend(request).execs.create(request.match_info["id"], body)
    return json_response({"Id": record.id}, 201)


async def start(request: web.Request) -> web.StreamResponse:
    body = await json_body(request)
    size = body.get("ConsoleSize")
    execs = backend(request).execs
    detach = bool(body.get("Detach"))
    try:
        record, reader, writer = await execs.start(request.match_info["id"], detach, None,
                                                   (int(size[0]), int(size[1])) if size else None)
    except DockyardError as e:
        record = execs.get(request.match_info["id"])
        if detach or not record.started or record.running:
            raise
        # dockerd: a process that could not be started is reported in the stream (exit code 126)
        return await _report_failure(request, record, str(e), body)
    if reader is None:
        return web.Response(status=200)
    # the exec's create decided whether it has a tty; the start decides the stream's framing (as dockerd)
    raw = bool(body["Tty"]) if "Tty" in body else record.tty
    if record.tty and not raw:
        reader = hijack.framed_as_stdout(reader)
    elif raw and not record.tty:
        reader = hijack.unframed(reader)
    content_type = hijack.RAW_STREAM if raw else hijack.MULTIPLEXED_STREAM

    async def exited() -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await execs.wait(record.id, timeout=EXIT_GRACE)

    # the exec's DetachKeys (docker-py and the CLI send the client's configured ones), else ctrl-p ctrl-q
    detach_keys = hijack.parse_detach_keys(getattr(record, "detach_keys", "") or None) if record.tty else b""
    return await hijack.session(request, content_type, reader, writer, stdin=record.attach_stdin, before_close=exited,
                                detach_keys=detach_keys)


async def _report_failure(request: web.Request, record: object, message: str, body: dict) -> web.StreamResponse:
    raw = bool(body["Tty"]) if "Tty" in body else bool(getattr(record, "tty", False))
    data = f"OCI runtime exec failed: {message}\r\n".encode()
    out = asyncio.StreamReader()
    out.feed_data(data if raw else bytes([2, 0, 0, 0]) + len(data).to_bytes(4, "big") + data)
    out.feed_eof()

    class _Closed:
        def close(self) -> None:
            pass

    return await hijack.session(request, hijack.RAW_STREAM if raw else hijack.MULTIPLEXED_STREAM, out, _Closed(),
                                stdin=False)


async def inspect(request: web.Request) -> web.Response:
    services = backend(request)
    e = services.execs.get(request.match_info["id"])
    return json_response({
        "ID": e.id, "Running": e.running, "ExitCode": e.exit_code, "CanRemove": False,
        "ContainerID": e.container_id, "DetachKeys": e.detach_keys, "OpenStdin": e.attach_stdin,
        "OpenStdout": e.attach_stdout, "OpenStderr": e.attach_stderr, "Pid": e.pid,
        "ProcessConfig": {"tty": e.tty, "entrypoint": e.cmd[0], "arguments": e.cmd[1:], "privileged": e.privileged,
                          "user": e.user},
    })


async def resize(request: web.Request) -> web.Response:
    await backend(request).execs.resize(request.match_info["id"], integer(request, "h", 0) or 0,
                                        integer(request, "w", 0) or 0)
    return web.Response(status=200)


def register(router: Router) -> None:
    router.add("POST", "/containers/{id}/exec", create)
    router.add("POST", "/exec/{id}/start", start)
    router.add("GET", "/exec/{id}/json", inspect)
    router.add("POST", "/exec/{id}/resize", resize)
