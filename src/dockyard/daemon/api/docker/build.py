"""/build: the legacy builder endpoint (a tar context in; JSON lines of stream, aux, error out)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from typing import Any

from aiohttp import web

from dockyard.daemon.api.docker.app import Router, backend, json_response
from dockyard.daemon.api.docker.params import boolean
from dockyard.daemon.api.docker.streams import CHUNK, ProgressRelay, progress_line
from dockyard.errors import DockyardError, InvalidArgument, NotImplementedFeature


def _json_map(request: web.Request, name: str) -> dict[str, str]:
    text = request.query.get(name, "")
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidArgument(f"invalid {name}: not JSON: {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"invalid {name}: expected a JSON object")
    # docker sends null for `--build-arg NAME` without a value and NAME unset in its environment
    return {str(k): str(v) for k, v in value.items() if v is not None}


def options_from(request: web.Request) -> Any:
    from dockyard.services.build import BuildOptions

    q = request.query
    if q.get("remote"):
        raise NotImplementedFeature("building from a remote context (git or URL) is not implemented: "
                                    "send the context as a tar")
    if boolean(request, "squash"):
        raise NotImplementedFeature("build option squash is not implemented")
    if q.get("version") == "2":
        raise NotImplementedFeature("BuildKit (version=2) is not implemented: use the legacy builder "
                                    "(DOCKER_BUILDKIT=0)")
    outputs = q.get("outputs", "")
    if outputs and outputs not in ("[]", "null"):
        raise NotImplementedFeature("build outputs are not implemented")
    cache_from = q.get("cachefrom", "")
    if cache_from and cache_from not in ("[]", "null"):
        raise NotImplementedFeature("--cache-from is not implemented")
    return BuildOptions(
        dockerfile=q.get("dockerfile", "") or "Dockerfile", tags=q.getall("t", []),
        build_args=_json_map(request, "buildargs"), labels=_json_map(request, "labels"),
        no_cache=boolean(request, "nocache"), pull=boolean(request, "pull"),
        target=q.get("target", ""), quiet=boolean(request, "q"), network_mode=q.get("networkmode", ""),
        remove=boolean(request, "rm", True), force_remove=boolean(request, "forcerm"),
        platform=q.get("platform", ""))


async def _spool(request: web.Request) -> Any:
    """The context tar in a private temporary file (the build reads it in a thread)."""
    spool = tempfile.TemporaryFile()
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            await asyncio.to_thread(spool.write, chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


async def build(request: web.Request) -> web.StreamResponse:
    services = backend(request)
    if services.builder is None:
        raise NotImplementedFeature("the builder is not available in this daemon")
    options = options_from(request)
    for tag in options.tags:
        from dockyard.types.reference import parse_image

        parse_image(tag)  # a bad tag is a 400 before anything runs
    spool = await _spool(request)
    relay = ProgressRelay()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        task = asyncio.get_running_loop().create_task(services.builder.build(spool, options, relay))
        await relay.relay(response, task)
        try:
            image_id = task.result()
            await response.write(progress_line({"aux": {"ID": image_id}}))
            short = image_id.split(":", 1)[1][:12]
            if options.quiet:
                await response.write(progress_line({"stream": f"{image_id}\n"}))
            else:
                await response.write(progress_line({"stream": f"Successfully built {short}\n"}))
            for tag in options.tags:
                name = await services.images.tag(image_id, tag)
                if not options.quiet:
                    await response.write(progress_line({"stream": f"Successfully tagged {name}\n"}))
        except DockyardError as e:
            code = getattr(e, "code", 1)
            await response.write(progress_line({"errorDetail": {"code": code, "message": str(e)}, "error": str(e)}))
    finally:
        spool.close()
    await response.write_eof()
    return response


async def prune(request: web.Request) -> web.Response:
    services = backend(request)
    if services.builder is None:
        raise NotImplementedFeature("the builder is not available in this daemon")
    removed, reclaimed = await services.builder.prune()
    return json_response({"CachesDeleted": [], "SpaceReclaimed": reclaimed, "Entries": removed})


async def cancel(request: web.Request) -> web.Response:
    raise NotImplementedFeature("cancelling a build is not implemented (close the connection instead)")


def register(router: Router) -> None:
    router.add("POST", "/build", build)
    router.add("POST", "/build/prune", prune)
    router.add("POST", "/build/cancel", cancel)

