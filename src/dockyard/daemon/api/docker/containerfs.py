"""A container's filesystem over the API: archive (docker cp), export, changes (diff), commit."""

from __future__ import annotations

import base64
import json
from typing import BinaryIO

from aiohttp import web

from dockyard.daemon.api.docker.app import Router, backend, json_response
from dockyard.daemon.api.docker.params import boolean, json_body
from dockyard.daemon.api.docker.streams import pipe_in, pipe_out
from dockyard.errors import InvalidArgument
from dockyard.services.fscopy import ExtractOptions, PathStat

STAT_HEADER = "X-Docker-Container-Path-Stat"


def _path(request: web.Request) -> str:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path is required (the path inside the container)")
    return path


def _stat_header(st: PathStat) -> str:
    return base64.b64encode(json.dumps(st.to_docker()).encode()).decode()


async def archive_head(request: web.Request) -> web.Response:
    fs = backend(request).containerfs
    st = await fs.stat(request.match_info["id"], _path(request))
    return web.Response(status=200, headers={STAT_HEADER: _stat_header(st), "Content-Type": "application/json"})


async def archive_get(request: web.Request) -> web.StreamResponse:
    fs = backend(request).containerfs
    cid, path = request.match_info["id"], _path(request)
    st = await fs.stat(cid, path)  # 404 before the stream starts

    async def produce(out: BinaryIO) -> None:
        await fs.get_archive(cid, path, out)

    return await pipe_out(request, produce, {"Content-Type": "application/x-tar", STAT_HEADER: _stat_header(st)})


async def archive_put(request: web.Request) -> web.Response:
    fs = backend(request).containerfs
    cid, path = request.match_info["id"], _path(request)
    options = ExtractOptions(no_overwrite_dir_non_dir=boolean(request, "noOverwriteDirNonDir"),
                             copy_uid_gid=boolean(request, "copyUIDGID"))

    async def consume(source: BinaryIO) -> int:
        count: int = await fs.put_archive(cid, path, source, options)
        return count

    await pipe_in(request, consume)
    return web.Response(status=200)


async def export(request: web.Request) -> web.StreamResponse:
    fs = backend(request).containerfs
    cid = request.match_info["id"]
    backend(request).containers.get(cid)

    async def produce(out: BinaryIO) -> None:
        await fs.export(cid, out)

    return await pipe_out(request, produce, {"Content-Type": "application/x-tar"})


async def changes(request: web.Request) -> web.Response:
    found = await backend(request).containerfs.changes(request.match_info["id"])
    return json_response([{"Path": ch.path, "Kind": ch.kind} for ch in found])


async def commit(request: web.Request) -> web.Response:
    container = request.query.get("container", "")
    if not container:
        raise InvalidArgument("container is required")
    repo, tag = request.query.get("repo", ""), request.query.get("tag", "")
    if tag and not repo:
        raise InvalidArgument("a tag needs a repository name")
    reference = (f"{repo}:{tag}" if tag else repo) or None
    body = await json_body(request)
    image = await backend(request).containerfs.commit(
        container, reference=reference, config=body or None, changes=request.query.getall("changes", []),
        author=request.query.get("author", ""), message=request.query.get("comment", ""),
        pause=boolean(request, "pause", True))
    return json_response({"Id": str(image.id)}, 201)


def register(router: Router) -> None:
    router.add("HEAD", "/containers/{id}/archive", archive_head)
    router.add("GET", "/containers/{id}/archive", archive_get)
    router.add("PUT", "/containers/{id}/archive", archive_put)
    router.add("GET", "/containers/{id}/export", export)
    router.add("GET", "/containers/{id}/changes", changes)
    router.add("POST", "/commit", commit)
