"""/_ping, /version, /info, /events, /system/df."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from dockyard.daemon.api.docker.app import Router, api_version, backend, json_response
from dockyard.daemon.api.docker.params import filters, timestamp
from dockyard.daemon.api.docker.version import API_VERSION, MIN_API_VERSION
from dockyard.errors import DockyardError
from dockyard.services.events import Event

PING_HEADERS = {
    "Api-Version": API_VERSION,
    "OSType": "linux",
    "Builder-Version": "1",
    "Docker-Experimental": "false",
    "Swarm": "inactive",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}


async def ping(request: web.Request) -> web.Response:
    body = b"" if request.method == "HEAD" else b"OK"
    response = web.Response(body=body, content_type="text/plain", charset="utf-8", headers=PING_HEADERS)
    return response


def _version_body(request: web.Request) -> dict[str, Any]:
    info = backend(request).system.info()
    return {
        "Platform": {"Name": "Dockyard Engine"},
        "Components": [
            {"Name": "Engine", "Version": info.version,
             "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Arch": info.arch,
                         "Os": info.os, "KernelVersion": info.kernel_version, "Experimental": "false"}},
            {"Name": info.default_runtime, "Version": info.version,
             "Details": {"Path": info.runtimes.get(info.default_runtime, "")}},
        ],
        "Version": info.version, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "", "GoVersion": "n/a (python)", "Os": info.os, "Arch": info.arch,
        "KernelVersion": info.kernel_version, "Experimental": False, "BuildTime": "",
    }


async def version(request: web.Request) -> web.Response:
    return json_response(_version_body(request))


async def info(request: web.Request) -> web.Response:
    services = backend(request)
    i = services.system.info()
    counts = services.containers.counts() if services.containers is not None else {}
    images = len(await services.images.list()) if services.images is not None else 0
    return json_response({
        "ID": i.id, "Name": i.name, "ServerVersion": i.version,
        "Containers": sum(counts.values()), "ContainersRunning": counts.get("running", 0),
        "ContainersPaused": counts.get("paused", 0),
        "ContainersStopped": sum(v for k, v in counts.items() if k not in ("running", "paused")),
        "Images": images, "Driver": "overlayfs", "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
        "Plugins": {"Volume": ["local"], "Network": ["none"], "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": True, "SwapLimit": True, "KernelMemory": False, "KernelMemoryTCP": False,
        "CpuCfsPeriod": True, "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True, "PidsLimit": True,
        "OomKillDisable": i.cgroup_version == "1", "IPv4Forwarding": False, "BridgeNfIptables": False,
        "BridgeNfIp6tables": False, "Debug": False, "NFd": 0, "NGoroutines": 0,
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": i.cgroup_version,
        "NEventsListener": 0, "KernelVersion": i.kernel_version, "OperatingSystem": i.operating_system,
        "OSVersion": i.os_version, "OSType": "linux", "Architecture": GO_MACHINE.get(i.arch, i.arch),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": None, "AllowNondistributableArtifactsHostnames": None,
                           "InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": None},
        "NCPU": i.ncpu, "MemTotal": i.mem_total, "GenericResources": None, "DockerRootDir": i.data_root,
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Labels": [], "ExperimentalBuild": False,
        "Runtimes": {name: {"path": path} for name, path in i.runtimes.items()}, "DefaultRuntime": i.default_runtime,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""}, "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""}, "SecurityOptions": ["name=seccomp,profile=builtin"],
        "DefaultAddressPools": [], "CDISpecDirs": [], "Warnings": i.warnings,
    })


GO_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}


def event_json(e: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"Type": e.type, "Action": e.action, "Actor": {"ID": e.actor_id, "Attributes": e.attributes},
                           "scope": "local", "time": e.time_nano // 1_000_000_000, "timeNano": e.time_nano}
    if e.type in ("container", "image"):
        out["status"] = e.action
        out["id"] = e.actor_id
        if e.type == "container" and "image" in e.attributes:
            out["from"] = e.attributes["image"]
    return out


def event_matcher(f: dict[str, list[str]]) -> Any:
    def match(e: Event) -> bool:
        if f.get("type") and e.type not in f["type"]:
            return False
        if f.get("event") and e.action.split(":")[0] not in f["event"] and e.action not in f["event"]:
            return False
        for kind in ("container", "image"):
            if f.get(kind):
                if e.type != kind:
                    return False
                names = {e.actor_id, e.actor_id[:12], e.attributes.get("name", "")}
                if not any(v in names or (len(v) >= 1 and e.actor_id.startswith(v)) for v in f[kind]):
                    return False
        for label in f.get("label", []):
            key, _, value = label.partition("=")
            if key not in e.attributes or (value and e.attributes[key] != value):
                return False
        return True
    return match


async def events(request: web.Request) -> web.StreamResponse:
    since = timestamp(request.query.get("since"))
    until = timestamp(request.query.get("until"))
    match = event_matcher(filters(request))
    source = backend(request).events
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    since_ns = int(since * 1e9) if since is not None else None
    until_ns = int(until * 1e9) if until is not None else None
    async for event in source.watch(since_ns, until_ns, match):
        await response.write(json.dumps(event_json(event)).encode() + b"\n")
    await response.write_eof()
    return response


async def disk_usage(request: web.Request) -> web.Response:
    """`docker system df`: images (with how many containers use each), containers (their writable
    layer's size), no volumes or build cache yet."""
    from dockyard.daemon.api.docker import containers as container_routes, images as image_routes

    services = backend(request)
    version = api_version(request)
    users: dict[str, int] = {}
    for c in services.containers.list() if services.containers is not None else []:
        users[c.image_id] = users.get(c.image_id, 0) + 1
    images_out = []
    layer_sizes: dict[str, int] = {}
    for image in await services.images.list():
        try:
            d = await services.images.details(str(image.id))
        except DockyardError:
            continue
        item = image_routes.summary(d, version)
        item["Containers"] = users.get(str(image.id), 0)
        images_out.append(item)
        for diff_id, size in zip(d.config.diff_ids, d.layer_sizes):
            layer_sizes[str(diff_id)] = size
    containers_out = []
    for c in services.containers.list() if services.containers is not None else []:
        item = container_routes.summary(c, services.containers)
        item["SizeRw"], item["SizeRootFs"] = await services.containers.sizes(c)
        containers_out.append(item)
    volumes_out = []
    if services.volumes is not None:
        from dockyard.daemon.api.docker.volumes import volume_json

        for v in services.volumes.list():
            size = await asyncio.to_thread(services.volumes.size, v.name)
            usage = {"Size": size, "RefCount": len(services.volumes.users(v.name))}
            volumes_out.append(volume_json(services.volumes, v, usage))
    return json_response({"LayersSize": sum(layer_sizes.values()), "Images": images_out, "Containers": containers_out,
                          "Volumes": volumes_out, "BuildCache": []})


def register(router: Router) -> None:
    router.add("GET", "/_ping", ping)
    router.add("HEAD", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)
    router.add("GET", "/system/df", disk_usage)
    router.add("GET", "/events", events)
