"""/containers/...: create, list, inspect, lifecycle, wait, logs, attach, resize, top, stats, rename."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import time
from typing import Any

from aiohttp import web

from dockyard.daemon.api.docker import hijack
from dockyard.daemon.api.docker.app import Router, api_version, backend, json_response
from dockyard.daemon.api.docker.params import boolean, filters, integer, json_body, timestamp
from dockyard.daemon.api.docker.version import at_least
from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.services.containers import Container, now_rfc3339, parse_rfc3339
from dockyard.services.logs import LogEntry, LogReader
from dockyard.utils.durations import human_duration

STDOUT, STDERR = 1, 2


# --- shapes ---------------------------------------------------------------------------------

def _command(c: Container) -> str:
    return " ".join([c.path, *c.args])


def _state_text(c: Container) -> str:
    s = c.state
    now = time.time()
    if s.status in ("running", "paused"):
        text = "Up " + human_duration(now - parse_rfc3339(s.started_at))
        if s.status == "paused":
            text += " (Paused)"
        elif s.health:
            status = s.health.get("Status")
            text += " (health: starting)" if status == "starting" else f" ({status})"
        return text
    ago = human_duration(now - parse_rfc3339(s.finished_at)) + " ago"
    if s.status == "restarting":
        return f"Restarting ({s.exit_code}) {ago}"
    if s.status == "exited":
        return f"Exited ({s.exit_code}) {ago}"
    return s.status.capitalize()


def endpoints_json(c: Container) -> dict[str, Any]:
    """NetworkSettings.Networks: the endpoints without the daemon's private fields."""
    return {name: {k: v for k, v in ep.items() if not k.startswith("_")} for name, ep in c.networks.items()}


def ports_json(c: Container, service: Any) -> dict[str, Any]:
    networks = getattr(service, "networks", None)
    if networks is None:
        return {}
    ports: dict[str, Any] = networks.ports(c)
    return ports


def port_list(ports: dict[str, Any]) -> list[dict[str, Any]]:
    """The container list's Ports: one entry per binding (or per exposed port without one)."""
    out: list[dict[str, Any]] = []
    for key, bindings in sorted(ports.items()):
        port, _, proto = key.partition("/")
        if not bindings:
            out.append({"PrivatePort": int(port), "Type": proto})
        for b in bindings or []:
            out.append({"IP": b["HostIp"], "PrivatePort": int(port), "PublicPort": int(b["HostPort"]), "Type": proto})
    return out


def mounts_json(c: Container) -> list[dict[str, Any]]:
    """Docker's MountPoint list (inspect's and the container list's Mounts)."""
    out = []
    for m in c.mounts:
        entry: dict[str, Any] = {"Type": m["type"]}
        if m["type"] == "volume":
            entry["Name"] = m["name"]
        entry["Source"] = m["source"]
        entry["Destination"] = m["destination"]
        if m["type"] == "volume":
            entry["Driver"] = m["driver"]
        entry.update({"Mode": m["mode"], "RW": m["rw"], "Propagation": m["propagation"]})
        out.append(entry)
    return out


def summary(c: Container, service: Any = None) -> dict[str, Any]:
    return {
        "Id": c.id, "Names": ["/" + c.name, *(service.link_names(c) if service is not None else [])],
        "Image": c.image, "ImageID": c.image_id, "Command": _command(c),
        "Created": int(parse_rfc3339(c.created)), "Ports": port_list(ports_json(c, service)) if service else [],
        "Labels": c.config.get("Labels") or {}, "State": c.state.status, "Status": _state_text(c),
        "HostConfig": {"NetworkMode": str(c.host_config.get("NetworkMode") or "default")},
        "NetworkSettings": {"Networks": endpoints_json(c)}, "Mounts": mounts_json(c),
    }


def network_settings(c: Container, service: Any) -> dict[str, Any]:
    networks = endpoints_json(c)
    first = next(iter(networks.values()), {}) if "bridge" in networks else {}
    pid = c.state.pid if c.state.status in ("running", "paused") else 0
    return {"Bridge": "", "SandboxID": c.id if pid else "", "SandboxKey": f"/proc/{pid}/ns/net" if pid else "",
            "Ports": ports_json(c, service), "HairpinMode": False, "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "EndpointID": first.get("EndpointID", ""), "Gateway": first.get("Gateway", ""),
            "GlobalIPv6Address": first.get("GlobalIPv6Address", ""),
            "GlobalIPv6PrefixLen": first.get("GlobalIPv6PrefixLen", 0), "IPAddress": first.get("IPAddress", ""),
            "IPPrefixLen": first.get("IPPrefixLen", 0), "IPv6Gateway": first.get("IPv6Gateway", ""),
            "MacAddress": first.get("MacAddress", ""),
            "Networks": networks}


def inspect_json(c: Container, service: Any) -> dict[str, Any]:
    s = c.state
    return {
        "Id": c.id, "Created": c.created, "Path": c.path, "Args": c.args,
        "State": {"Status": s.status, "Running": s.status in ("running", "paused"), "Paused": s.status == "paused",
                  "Restarting": s.status == "restarting", "OOMKilled": s.oom_killed, "Dead": s.status == "dead",
                  "Pid": s.pid if s.status in ("running", "paused") else 0, "ExitCode": s.exit_code, "Error": s.error,
                  "StartedAt": s.started_at, "FinishedAt": s.finished_at,
                  **({"Health": s.health} if s.health else {})},
        "Image": c.image_id, "ResolvConfPath": os.path.join(service.dir(c.id), "resolv.conf"),
        "HostnamePath": os.path.join(service.dir(c.id), "hostname"),
        "HostsPath": os.path.join(service.dir(c.id), "hosts"), "LogPath": service.log_path(c.id),
        "Name": "/" + c.name, "RestartCount": s.restart_count, "Driver": c.driver, "Platform": "linux",
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None,
        "HostConfig": {"NetworkMode": "none", "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                       "LogConfig": {"Type": "json-file", "Config": {}}, "Runtime": c.runtime, **c.host_config},
        "GraphDriver": {"Name": c.driver, "Data": None}, "Mounts": mounts_json(c),
        "Config": {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
                   "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": [],
                   "Cmd": None, "Image": c.image, "Volumes": None, "WorkingDir": "", "Entrypoint": None,
                   "OnBuild": None, "Labels": {}, **c.config},
        "NetworkSettings": network_settings(c, service),
    }


# --- create, list, inspect ------------------------------------------------------------------

# Set to anything but their empty value, these are refused (not implemented).
async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    host_config = body.pop("HostConfig", None) or {}
    networking = body.pop("NetworkingConfig", None) or {}
    body.pop("Platform", None)
    mac = body.pop("MacAddress", None)
    if mac:
        networking = _mac_on_primary_network(networking, host_config, str(mac))
    c = await backend(request).containers.create(request.query.get("name") or None, body, host_config, networking)
    return json_response({"Id": c.id, "Warnings": []}, 201)


def _mac_on_primary_network(networking: dict[str, Any], host_config: dict[str, Any], mac: str) -> dict[str, Any]:
    """Config.MacAddress (docker-py, clients before API 1.44): the primary network endpoint's MAC."""
    mode = str(host_config.get("NetworkMode") or "default")
    if mode in ("host", "none") or mode.startswith("container:"):
        raise InvalidArgument("conflicting options: mac-address and the network mode")
    endpoints = dict(networking.get("EndpointsConfig") or {})
    same = ("default", "bridge") if mode in ("default", "bridge") else (mode,)
    key = next((k for k in endpoints if k in same), mode)
    endpoint = dict(endpoints.get(key) or {})
    if endpoint.get("MacAddress") and str(endpoint["MacAddress"]).lower() != mac.lower():
        raise InvalidArgument(f"conflicting MAC addresses for network {key}: {mac} and {endpoint['MacAddress']}")
    endpoint["MacAddress"] = mac
    endpoints[key] = endpoint
    return {**networking, "EndpointsConfig": endpoints}


def _matches(c: Container, f: dict[str, list[str]]) -> bool:
    if f.get("status") and c.state.status not in f["status"]:
        return False
    if f.get("name") and not any(n.lstrip("/") in c.name for n in f["name"]):
        return False
    if f.get("id") and not any(c.id.startswith(i) for i in f["id"]):
        return False
    if f.get("exited") and (c.state.status != "exited" or str(c.state.exit_code) not in f["exited"]):
        return False
    labels = c.config.get("Labels") or {}
    for label in f.get("label", []):
        key, sep, value = label.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    if f.get("ancestor") and not any(a in (c.image, c.image_id) or c.image_id.startswith("sha256:" + a)
                                     for a in f["ancestor"]):
        return False
    return True


async def list_containers(request: web.Request) -> web.Response:
    f = filters(request)
    everything = boolean(request, "all") or bool(f.get("status") or f.get("exited"))
    found = [c for c in backend(request).containers.list() if (everything or c.state.status in ("running", "paused", "restarting"))
             and _matches(c, f)]
    limit = integer(request, "limit", -1) or -1
    if limit > 0:
        found = found[:limit]
    service = backend(request).containers
    out = [summary(c, service) for c in found]
    if boolean(request, "size"):
        for item, c in zip(out, found):
            item["SizeRw"], item["SizeRootFs"] = await service.sizes(c)
    return json_response(out)


async def inspect(request: web.Request) -> web.Response:
    service = backend(request).containers
    c = service.get(request.match_info["id"])
    out = inspect_json(c, service)
    if boolean(request, "size"):
        out["SizeRw"], out["SizeRootFs"] = await service.sizes(c)
    return json_response(out)


# --- lifecycle ------------------------------------------------------------------------------

def _no_content() -> web.Response:
    return web.Response(status=204)


async def start(request: web.Request) -> web.Response:
    service = backend(request).containers
    c = service.get(request.match_info["id"])
    if c.state.status in ("running",):
        return web.Response(status=304)
    await service.start(c.id)
    return _no_content()


async def stop(request: web.Request) -> web.Response:
    stopped = await backend(request).containers.stop(request.match_info["id"], integer(request, "t"),
                                                      request.query.get("signal"))
    return _no_content() if stopped else web.Response(status=304)


async def restart(request: web.Request) -> web.Response:
    await backend(request).containers.restart(request.match_info["id"], integer(request, "t"), request.query.get("signal"))
    return _no_content()


async def kill(request: web.Request) -> web.Response:
    await backend(request).containers.kill(request.match_info["id"], request.query.get("signal"))
    return _no_content()


async def pause(request: web.Request) -> web.Response:
    await backend(request).containers.pause(request.match_info["id"])
    return _no_content()


async def unpause(request: web.Request) -> web.Response:
    await backend(request).containers.unpause(request.match_info["id"])
    return _no_content()


async def remove(request: web.Request) -> web.Response:
    if boolean(request, "link"):
        backend(request).containers.remove_link(request.match_info["id"])
        return _no_content()
    await backend(request).containers.remove(request.match_info["id"], force=boolean(request, "force"),
                                             volumes=boolean(request, "v"))
    return _no_content()


async def remove_link(request: web.Request) -> web.Response:
    """DELETE /containers/LINKING/ALIAS?link=1 (docker rm --link): only the link goes."""
    if not boolean(request, "link"):
        raise NotFound(f"No such container: {request.match_info['linking']}/{request.match_info['alias']}")
    backend(request).containers.remove_link(f"{request.match_info['linking']}/{request.match_info['alias']}")
    return _no_content()


async def rename(request: web.Request) -> web.Response:
    await backend(request).containers.rename(request.match_info["id"], request.query.get("name", ""))
    return _no_content()


async def wait(request: web.Request) -> web.StreamResponse:
    """Headers at once (the CLI waits for them before `start`), the body at the exit."""
    service = backend(request).containers
    condition = request.query.get("condition", "not-running")
    future = service.wait_future(request.match_info["id"], condition)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    code = await future
    await response.write(json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n")
    await response.write_eof()
    return response


async def resize(request: web.Request) -> web.Response:
    await backend(request).containers.resize(request.match_info["id"], integer(request, "h", 0) or 0,
                                             integer(request, "w", 0) or 0)
    return web.Response(status=200)


async def top(request: web.Request) -> web.Response:
    titles, rows = await backend(request).containers.top(request.match_info["id"], request.query.get("ps_args", "-ef"))
    return json_response({"Titles": titles, "Processes": rows})


def _docker_stats(c: Container, raw: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    data = raw.get("data", raw) if isinstance(raw, dict) else {}
    cpu = data.get("cpu") or {}
    usage = cpu.get("usage") or {}
    mem = data.get("memory") or {}
    mem_usage = mem.get("usage") or {}
    pids = data.get("pids") or {}
    ncpu = os.cpu_count() or 1
    system = 0
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:8]
        system = sum(int(x) for x in fields) * 10_000_000
    except OSError:
        pass
    cpu_stats = {"cpu_usage": {"total_usage": usage.get("total", 0), "percpu_usage": usage.get("percpu") or None,
                               "usage_in_kernelmode": usage.get("kernel", 0), "usage_in_usermode": usage.get("user", 0)},
                 "system_cpu_usage": system, "online_cpus": ncpu, "throttling_data": {"periods": 0, "throttled_periods": 0,
                                                                                     "throttled_time": 0}}
    return {
        "read": now_rfc3339(),
        "preread": "0001-01-01T00:00:00Z", "id": c.id, "name": "/" + c.name,
        "pids_stats": {"current": pids.get("current", 0), **({"limit": pids["limit"]} if pids.get("limit") else {})},
        "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None},
        "num_procs": 0, "storage_stats": {},
        "cpu_stats": cpu_stats, "precpu_stats": previous or {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
        "memory_stats": {"usage": mem_usage.get("usage", 0), "max_usage": mem_usage.get("max", 0),
                         "limit": _memory_limit(mem_usage.get("limit", 0)), "stats": mem.get("raw") or mem.get("stats") or {}},
        "networks": {},
    }


def _memory_limit(cgroup_limit: int) -> int:
    """Docker shows the host's memory when the container has no (or a larger) limit."""
    from dockyard.services.system import mem_total

    host = mem_total()
    return min(cgroup_limit, host) if cgroup_limit and host else (cgroup_limit or host)


async def stats(request: web.Request) -> web.StreamResponse:
    service = backend(request).containers
    stream = boolean(request, "stream", True) and not boolean(request, "one-shot")
    c, raw = await service.stats(request.match_info["id"])
    first = _docker_stats(c, raw)
    if not stream:
        return json_response(first)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    previous = first["cpu_stats"]
    await response.write(json.dumps(first).encode() + b"\n")
    while c.state.status in ("running", "paused"):
        await asyncio.sleep(1)
        c, raw = await service.stats(c.id)
        current = _docker_stats(c, raw, previous)
        previous = current["cpu_stats"]
        await response.write(json.dumps(current).encode() + b"\n")
    await response.write_eof()
    return response


# --- logs -----------------------------------------------------------------------------------

def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


async def logs(request: web.Request) -> web.StreamResponse:
    service = backend(request).containers
    c = service.get(request.match_info["id"])
    want_out, want_err = boolean(request, "stdout"), boolean(request, "stderr")
    if not want_out and not want_err:
        raise InvalidArgument("Bad parameters: you must choose at least one stream")
    follow = boolean(request, "follow")
    stamps = boolean(request, "timestamps")
    since = timestamp(request.query.get("since")) or None
    until = timestamp(request.query.get("until"))
    tail_text = request.query.get("tail", "all")
    try:
        tail = None if tail_text in ("", "all") else int(tail_text)
    except ValueError:
        raise InvalidArgument(f"invalid tail value {tail_text!r}") from None
    if (c.host_config.get("LogConfig") or {}).get("Type") == "none":
        raise InvalidArgument('configured logging driver does not support reading')
    tty = c.tty
    reader = LogReader(service.log_path(c.id))
    response = web.StreamResponse(headers={"Content-Type": hijack.RAW_STREAM if tty else hijack.MULTIPLEXED_STREAM})
    await response.prepare(request)

    def render(entry: LogEntry) -> bytes | None:
        if (entry.stream == "stdout" and not want_out) or (entry.stream == "stderr" and not want_err):
            return None
        if since is not None or until is not None:
            t = parse_rfc3339(entry.time) if entry.time else 0
            if (since is not None and t <= since) or (until is not None and t > until):
                return None
        data = entry.time.encode() + b" " + entry.data if stamps else entry.data
        return data if tty else _frame(STDERR if entry.stream == "stderr" else STDOUT, data)

    def running() -> bool:
        if until is not None and until < time.time():
            return False
        return c.state.status in ("running", "paused", "restarting", "created") and c.id in service.containers

    try:
        for e in reader.existing(tail):
            out = render(e)
            if out:
                await response.write(out)
        if follow:
            async for e in reader.follow(running):
                out = render(e)
                if out:
                    await response.write(out)
    finally:
        reader.close()
    await response.write_eof()
    return response


# --- attach ---------------------------------------------------------------------------------

def _past_output(service: Any, c: Container, want_out: bool, want_err: bool) -> bytes:
    """`attach?logs=1`: what the container printed so far, framed unless it has a tty."""
    if (c.host_config.get("LogConfig") or {}).get("Type") == "none":
        return b""
    reader = LogReader(service.log_path(c.id))
    try:
        entries = reader.existing()
    finally:
        reader.close()
    out = bytearray()
    for e in entries:
        if (e.stream == "stdout" and not want_out) or (e.stream == "stderr" and not want_err):
            continue
        out += e.data if c.tty else _frame(STDERR if e.stream == "stderr" else STDOUT, e.data)
    return bytes(out)


class _NoInput:
    def close(self) -> None:
        pass


async def attach(request: web.Request) -> web.StreamResponse:
    service = backend(request).containers
    want_stdin, want_out, want_err = boolean(request, "stdin"), boolean(request, "stdout"), boolean(request, "stderr")
    c = service.get(request.match_info["id"])
    content_type = hijack.RAW_STREAM if c.tty or not at_least(api_version(request), "1.42") else hijack.MULTIPLEXED_STREAM
    past = _past_output(service, c, want_out, want_err) if boolean(request, "logs") else b""
    if not boolean(request, "stream"):  # only the logs (dockerd: stream=0 sends them and ends)
        out = asyncio.StreamReader()
        out.feed_data(past)
        out.feed_eof()
        return await hijack.session(request, content_type, out, _NoInput(), stdin=False)
    c, reader, writer = await service.attach(c.id, want_stdin, want_out, want_err)
    if past:
        reader = hijack.prefixed(past, reader)
    detach_keys = hijack.parse_detach_keys(request.query.get("detachKeys"))
    return await hijack.session(request, content_type, reader, writer, stdin=want_stdin, detach_keys=detach_keys)


async def attach_ws(request: web.Request) -> web.StreamResponse:
    """GET /containers/{id}/attach/ws (what web consoles use): the container's output unframed,
    one message per chunk (binary from API 1.28 on, text before, as dockerd), and every message
    received written to its stdin; the client's close is the end of its input. The session ends
    with the output or the client's close."""
    import codecs

    service = backend(request).containers
    want_stdin, want_out, want_err = boolean(request, "stdin"), boolean(request, "stdout"), boolean(request, "stderr")
    c = service.get(request.match_info["id"])
    past = _past_output(service, c, want_out, want_err) if boolean(request, "logs") else b""
    ws = web.WebSocketResponse()
    await ws.prepare(request)  # first: nothing is attached for a request that is not a websocket
    writer: Any = None
    try:
        if boolean(request, "stream"):
            c, reader, writer = await service.attach(c.id, want_stdin, want_out, want_err)
        else:
            reader = asyncio.StreamReader()
            reader.feed_eof()
    except DockyardError as e:
        await ws.close(code=1011, message=str(e)[:120].encode())
        return ws
    if past:
        reader = hijack.prefixed(past, reader)
    output = reader if c.tty else hijack.unframed(reader)
    binary = at_least(api_version(request), "1.28")
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    async def send_output() -> None:
        while data := await output.read(65536):
            if ws.closed:
                return
            await (ws.send_bytes(data) if binary else ws.send_str(decoder.decode(data)))

    async def receive_input() -> None:
        async for message in ws:
            if writer is None or not want_stdin:
                continue
            if message.type == web.WSMsgType.BINARY:
                writer.write(message.data)
            elif message.type == web.WSMsgType.TEXT:
                writer.write(message.data.encode())
            else:
                continue
            await writer.drain()
        if writer is not None and want_stdin and writer.can_write_eof():
            writer.write_eof()  # the wrapper keeps dockerd's rule on whether stdin really closes

    loop = asyncio.get_running_loop()
    sending, receiving = loop.create_task(send_output()), loop.create_task(receive_input())
    try:
        await asyncio.wait({sending, receiving}, return_when=asyncio.FIRST_COMPLETED)
        if receiving.done() and not sending.done():
            with contextlib.suppress(asyncio.TimeoutError):  # the last output after the input ended
                await asyncio.wait_for(asyncio.shield(sending), 1.0)
    finally:
        for task in (sending, receiving):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        await ws.close()
    return ws


async def prune(request: web.Request) -> web.Response:
    f = filters(request)
    until = timestamp((f.get("until") or [None])[0])
    label_rules = f.get("label", [])
    not_label_rules = f.get("label!", [])

    def keep(c: Container) -> bool:
        if until is not None and parse_rfc3339(c.created) >= until:
            return True
        labels = c.config.get("Labels") or {}
        for rule in label_rules:
            key, sep, value = rule.partition("=")
            if key not in labels or (sep and labels[key] != value):
                return True
        for rule in not_label_rules:
            key, sep, value = rule.partition("=")
            if key in labels and (not sep or labels[key] == value):
                return True
        return False

    removed, reclaimed = await backend(request).containers.prune(keep)
    return json_response({"ContainersDeleted": removed or None, "SpaceReclaimed": reclaimed})


async def update(request: web.Request) -> web.Response:
    body = await json_body(request)
    warnings = await backend(request).containers.update(request.match_info["id"], body)
    return json_response({"Warnings": warnings})


def register(router: Router) -> None:
    router.add("POST", "/containers/create", create)
    router.add("POST", "/containers/prune", prune)
    router.add("GET", "/containers/json", list_containers)
    router.add("GET", "/containers/{id}/json", inspect)
    router.add("POST", "/containers/{id}/start", start)
    router.add("POST", "/containers/{id}/stop", stop)
    router.add("POST", "/containers/{id}/restart", restart)
    router.add("POST", "/containers/{id}/kill", kill)
    router.add("POST", "/containers/{id}/pause", pause)
    router.add("POST", "/containers/{id}/unpause", unpause)
    router.add("POST", "/containers/{id}/wait", wait)
    router.add("DELETE", "/containers/{id}", remove)
    router.add("DELETE", "/containers/{linking}/{alias}", remove_link)
    router.add("POST", "/containers/{id}/rename", rename)
    router.add("POST", "/containers/{id}/update", update)
    router.add("POST", "/containers/{id}/resize", resize)
    router.add("GET", "/containers/{id}/top", top)
    router.add("GET", "/containers/{id}/stats", stats)
    router.add("GET", "/containers/{id}/logs", logs)
    router.add("POST", "/containers/{id}/attach", attach)
    router.add("GET", "/containers/{id}/attach/ws", attach_ws)
