"""/volumes: list, inspect, create, remove, prune (Docker's JSON shapes); cluster volumes are refused."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from dockyard.daemon.api.docker.app import Router, api_version, backend, json_response
from dockyard.daemon.api.docker.params import boolean, filters, json_body
from dockyard.daemon.api.docker.version import at_least
from dockyard.errors import InvalidArgument, NotImplementedFeature

LIST_FILTERS = ("name", "dangling", "driver", "label")
PRUNE_FILTERS = ("label", "label!", "all")


def volume_json(service: Any, v: Any, usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {"CreatedAt": v.created_at, "Driver": v.driver, "Labels": dict(v.labels), "Mountpoint": service.mountpoint(v.name),
            "Name": v.name, "Options": dict(v.options) if v.options else None, "Scope": "local",
            "UsageData": usage}


def _truth(values: list[str], key: str) -> bool:
    value = values[-1].lower()
    if value not in ("true", "1", "false", "0"):
        raise InvalidArgument(f"invalid filter '{key}={values[-1]}'")
    return value in ("true", "1")


def _labels_match(labels: dict[str, str], rules: list[str]) -> bool:
    for rule in rules:
        key, sep, value = rule.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _check_filters(f: dict[str, list[str]], allowed: tuple[str, ...]) -> None:
    for key in f:
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")


async def list_volumes(request: web.Request) -> web.Response:
    service = backend(request).volumes
    f = filters(request)
    _check_filters(f, LIST_FILTERS)
    found = []
    for v in service.list():
        if f.get("name") and not any(n in v.name for n in f["name"]):
            continue
        if f.get("driver") and v.driver not in f["driver"]:
            continue
        if f.get("dangling") and _truth(f["dangling"], "dangling") == bool(service.users(v.name)):
            continue
        if not _labels_match(v.labels, f.get("label", [])):
            continue
        found.append(volume_json(service, v))
    return json_response({"Volumes": found, "Warnings": []})


async def inspect_volume(request: web.Request) -> web.Response:
    service = backend(request).volumes
    return json_response(volume_json(service, service.get(request.match_info["name"])))


async def create_volume(request: web.Request) -> web.Response:
    body = await json_body(request)
    if body.get("ClusterVolumeSpec"):
        raise NotImplementedFeature("cluster volumes (ClusterVolumeSpec): swarm is not available")
    service = backend(request).volumes
    v = await asyncio.to_thread(service.create, str(body.get("Name") or ""), str(body.get("Driver") or ""),
                                dict(body.get("DriverOpts") or {}), dict(body.get("Labels") or {}))
    return json_response(volume_json(service, v), 201)


async def update_volume(request: web.Request) -> web.Response:
    raise NotImplementedFeature("updating a volume: only cluster volumes can be updated, and swarm is not available")


async def remove_volume(request: web.Request) -> web.Response:
    await asyncio.to_thread(backend(request).volumes.remove, request.match_info["name"], boolean(request, "force"))
    return web.Response(status=204)


async def prune(request: web.Request) -> web.Response:
    f = filters(request)
    _check_filters(f, PRUNE_FILTERS)
    # API 1.42 and later prune only anonymous volumes unless all=true (dockerd's rule)
    everything = not at_least(api_version(request), "1.42") or (bool(f.get("all")) and _truth(f["all"], "all"))
    with_labels, without_labels = f.get("label", []), f.get("label!", [])

    def keep(v: Any) -> bool:
        if not everything and not v.anonymous:
            return True
        if not _labels_match(v.labels, with_labels):
            return True
        for rule in without_labels:
            if _labels_match(v.labels, [rule]):
                return True
        return False

    removed, reclaimed = await asyncio.to_thread(backend(request).volumes.prune, keep)
    return json_response({"VolumesDeleted": removed or None, "SpaceReclaimed": reclaimed})


def register(router: Router) -> None:
    router.add("GET", "/volumes", list_volumes)
    router.add("POST", "/volumes/create", create_volume)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/{name}", inspect_volume)
    router.add("PUT", "/volumes/{name}", update_volume)
    router.add("DELETE", "/volumes/{name}", remove_volume)
