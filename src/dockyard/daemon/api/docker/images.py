"""/images/...: list, inspect, history, tag, remove, create (embedded pull, import), save, load, prune."""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from dockyard.daemon.api.docker.app import Router, api_version, backend, json_response
from dockyard.daemon.api.docker.params import boolean, filters, json_body, timestamp
from dockyard.daemon.api.docker.streams import ProgressRelay, pipe_in, progress_line
from dockyard.daemon.api.docker.version import at_least
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.image.model import Image, ImageDetails
from dockyard.types.reference import familiar, parse_reference


def _created_ts(value: str | None) -> int:
    if not value:
        return 0
    text = value.replace("Z", "+00:00")
    head, sep, rest = text.partition(".")
    if sep:  # Python 3.11 takes at most 6 fraction digits
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits):]
        text = f"{head}.{digits[:6]}{tz}"
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0


def _tags(image: Image) -> list[str]:
    return [familiar(t) for t in image.repo_tags]


def _digests(image: Image) -> list[str]:
    return [familiar(d) for d in image.repo_digests]


def summary(d: ImageDetails, version: str) -> dict[str, Any]:
    image = d.image
    out: dict[str, Any] = {
        "Id": str(image.id), "ParentId": image.parent or "", "RepoTags": _tags(image), "RepoDigests": _digests(image),
        "Created": _created_ts(d.config.created), "Size": image.size, "SharedSize": -1,
        "Labels": d.container_config.get("Labels") or {}, "Containers": -1,
    }
    if not at_least(version, "1.44"):
        out["VirtualSize"] = image.size
    return out


def inspect_json(d: ImageDetails, version: str) -> dict[str, Any]:
    image, raw = d.image, d.config.raw
    out: dict[str, Any] = {
        "Id": str(image.id), "RepoTags": _tags(image), "RepoDigests": _digests(image), "Parent": image.parent or "",
        "Comment": raw.get("comment", ""), "Created": d.config.created or "", "DockerVersion": raw.get("docker_version", ""),
        "Author": raw.get("author", ""), "Config": d.container_config, "Architecture": raw.get("architecture", ""),
        "Os": raw.get("os", ""), "Size": image.size,
        "GraphDriver": {"Name": "overlayfs", "Data": None},
        "RootFS": {"Type": "layers", "Layers": [str(x) for x in d.config.diff_ids]},
        "Metadata": {"LastTagTime": datetime.fromtimestamp(image.created_at).astimezone().isoformat()},
    }
    if raw.get("variant"):
        out["Variant"] = raw["variant"]
    if not at_least(version, "1.44"):
        out["VirtualSize"] = image.size
        out["Container"] = ""
        out["ContainerConfig"] = {}
    return out


def _reference_matcher(patterns: list[str]) -> Callable[[Image], bool]:
    import fnmatch

    def match(image: Image) -> bool:
        names = [familiar(t) for t in image.repo_tags] + [familiar(d) for d in image.repo_digests]
        for pattern in patterns:
            for name in names:
                repo = name.rsplit(":", 1)[0] if "@" not in name else name.split("@")[0]
                if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(repo, pattern):
                    return True
        return False
    return match


def _label_matcher(labels: list[str]) -> Callable[[dict[str, str]], bool]:
    def match(have: dict[str, str]) -> bool:
        for label in labels:
            key, sep, value = label.partition("=")
            if key not in have or (sep and have[key] != value):
                return False
        return True
    return match


async def list_images(request: web.Request) -> web.Response:
    f = filters(request)
    images = backend(request).images
    dangling = None
    if f.get("dangling"):
        dangling = f["dangling"][0] in ("true", "1")
    found = await images.list(dangling=dangling)
    if not boolean(request, "all") or dangling:
        # Docker hides intermediate images (untagged, with children: a build's steps); a
        # dangling image is an untagged one that is not such a step
        parents = await asyncio.to_thread(images.store.parent_ids)
        found = [i for i in found if not (i.dangling and str(i.id) in parents)]
    if f.get("reference"):
        found = [i for i in found if _reference_matcher(f["reference"])(i)]
    out = []
    version = api_version(request)
    for image in found:
        try:
            d = await images.details(str(image.id))
        except DockyardError:
            continue
        if f.get("label") and not _label_matcher(f["label"])(d.container_config.get("Labels") or {}):
            continue
        out.append(summary(d, version))
    return json_response(out)


async def inspect_image(request: web.Request) -> web.Response:
    d = await backend(request).images.details(request.match_info["name"])
    return json_response(inspect_json(d, api_version(request)))


async def history(request: web.Request) -> web.Response:
    entries = await backend(request).images.history(request.match_info["name"])
    return json_response([{"Id": e.id, "Created": _created_ts(e.created), "CreatedBy": e.created_by,
                           "Tags": [familiar(t) for t in e.tags] or None, "Size": e.size, "Comment": e.comment}
                          for e in entries])


async def tag(request: web.Request) -> web.Response:
    repo = request.query.get("repo", "")
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    tag_ = request.query.get("tag", "")
    target = f"{repo}:{tag_}" if tag_ else repo
    await backend(request).images.tag(request.match_info["name"], target)
    return web.Response(status=201)


async def remove(request: web.Request) -> web.Response:
    report = await backend(request).images.remove(request.match_info["name"], force=boolean(request, "force"),
                                                   prune_children=not boolean(request, "noprune"))
    return json_response(report.items())


_progress = progress_line


async def create(request: web.Request) -> web.StreamResponse:
    services = backend(request)
    from_image = request.query.get("fromImage", "")
    from_src = request.query.get("fromSrc", "")
    if from_image:
        name = from_image
        tag_ = request.query.get("tag", "")
        if tag_:
            name = f"{from_image}@{tag_}" if tag_.startswith("sha256:") else f"{from_image}:{tag_}"
        ref = parse_reference(name)
        shown = ref.tag or "latest"
        before = await asyncio.to_thread(services.images.store.lookup, str(ref.tagged_or_latest()))
        relay = ProgressRelay()
        pulling = asyncio.get_running_loop().create_task(
            services.images.pull(name, relay, registry_credentials(request)))
        await relay.first(pulling)  # an error before any progress is a proper error response
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(_progress({"status": f"Pulling from {ref.familiar_name}", "id": shown}))
        await relay.relay(response, pulling)
        try:
            image = pulling.result()
        except DockyardError as e:
            await response.write(_progress({"errorDetail": {"message": str(e)}, "error": str(e)}))
            await response.write_eof()
            return response
        await response.write(_progress({"status": f"Digest: {image.manifest_digest}"}))
        shown_name = familiar(str(ref.tagged_or_latest()))
        if before is not None and before.id == image.id:
            await response.write(_progress({"status": f"Status: Image is up to date for {shown_name}"}))
        else:
            await response.write(_progress({"status": f"Status: Downloaded newer image for {shown_name}"}))
        await response.write_eof()
        return response
    if from_src:
        if from_src != "-":
            raise InvalidArgument("import from a URL is not implemented (use fromSrc=- with the tarball as the body)")
        repo = request.query.get("repo", "")
        tag_ = request.query.get("tag", "")
        reference = (f"{repo}:{tag_}" if tag_ else repo) or None
        data = await request.read()
        image = await services.images.import_rootfs(io.BytesIO(data), reference, request.query.getall("changes", []),
                                                    request.query.get("message", ""), "-")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(_progress({"status": str(image.id)}))
        await response.write_eof()
        return response
    raise InvalidArgument("fromImage or fromSrc is required")


def registry_credentials(request: web.Request) -> Any:
    """The X-Registry-Auth header (base64url JSON the docker CLI sends): Credentials or None."""
    import base64

    from dockyard.registry.client import Credentials

    header = request.headers.get("X-Registry-Auth", "").strip()
    if not header:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("invalid X-Registry-Auth header") from None
    if not isinstance(value, dict) or not value.get("username"):
        return None
    return Credentials(str(value["username"]), str(value.get("password") or ""))


async def auth(request: web.Request) -> web.Response:
    body = await json_body(request)
    server = str(body.get("serveraddress") or "")
    for prefix in ("https://", "http://"):
        server = server[len(prefix):] if server.startswith(prefix) else server
    server = server.split("/", 1)[0]
    if not server:
        raise InvalidArgument("serveraddress is required")
    await backend(request).images.login(server, str(body.get("username") or ""), str(body.get("password") or ""))
    return json_response({"Status": "Login Succeeded", "IdentityToken": ""})


async def distribution(request: web.Request) -> web.Response:
    info = await backend(request).images.distribution(request.match_info["name"], registry_credentials(request))
    return json_response(info)


async def push(request: web.Request) -> web.StreamResponse:
    images = backend(request).images
    name = request.match_info["name"]
    tag = request.query.get("tag", "")
    ref = parse_reference(f"{name}:{tag}" if tag else name)
    await images.get(str(ref.tagged_or_latest()))  # 404 before the stream starts
    relay = ProgressRelay()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(_progress({"status": f"The push refers to repository [{ref.name if ref.domain != 'docker.io' else ref.familiar_name}]"}))
    pushing = asyncio.get_running_loop().create_task(
        images.push(str(ref.tagged_or_latest()), relay, registry_credentials(request)))
    await relay.relay(response, pushing)
    try:
        digest, size = pushing.result()
    except DockyardError as e:
        await response.write(_progress({"errorDetail": {"message": str(e)}, "error": str(e)}))
    else:
        shown_tag = ref.tag or "latest"
        await response.write(_progress({"status": f"{shown_tag}: digest: {digest} size: {size}"}))
        await response.write(_progress({"progressDetail": {}, "aux": {"Tag": shown_tag, "Digest": digest, "Size": size}}))
    await response.write_eof()
    return response


async def _stream_save(request: web.Request, names: list[str]) -> web.StreamResponse:
    images = backend(request).images
    for name in names:
        await images.get(name)  # 404 before the stream starts
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def produce() -> None:
        with os.fdopen(write_fd, "wb") as out:
            try:
                images.save(names, out)
            except BaseException as e:  # noqa: BLE001 - reported to the reader below
                errors.append(e)

    thread = threading.Thread(target=produce, name="image-save", daemon=True)
    thread.start()
    response = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    with os.fdopen(read_fd, "rb") as source:
        while True:
            chunk = await loop.run_in_executor(None, source.read, 1 << 20)
            if not chunk:
                break
            await response.write(chunk)
    await loop.run_in_executor(None, thread.join)
    if errors:
        raise errors[0]
    await response.write_eof()
    return response


async def save_one(request: web.Request) -> web.StreamResponse:
    return await _stream_save(request, [request.match_info["name"]])


async def save_many(request: web.Request) -> web.StreamResponse:
    names = request.query.getall("names", [])
    if not names:
        raise InvalidArgument("no image names given")
    return await _stream_save(request, names)


async def load(request: web.Request) -> web.Response:
    images = backend(request).images
    try:
        loaded = await pipe_in(request, images.load)
    except InvalidArgument as e:
        # dockerd answers a bad archive in the JSON stream (the CLI and docker-py read it from there)
        return web.Response(body=_progress({"errorDetail": {"message": str(e)}, "error": str(e)}),
                            content_type="application/json")
    lines = []
    for item in loaded:
        for name in item.names or [str(item.image.id)]:
            label = "Loaded image: " if item.names else "Loaded image ID: "
            lines.append({"stream": f"{label}{name}\n"})
    body = b"".join(_progress(line) for line in lines)
    return web.Response(body=body, content_type="application/json")


async def prune(request: web.Request) -> web.Response:
    f = filters(request)
    all_images = bool(f.get("dangling")) and f["dangling"][0] in ("false", "0")
    until = timestamp(f["until"][0]) if f.get("until") else None
    labels = _label_matcher(f["label"]) if f.get("label") else None
    report = await backend(request).images.prune(all_images=all_images, until=until, labels=labels)
    return json_response({"ImagesDeleted": report.images.items() or None, "SpaceReclaimed": report.space_reclaimed})


def register(router: Router) -> None:
    router.add("GET", "/images/json", list_images)
    router.add("GET", "/images/get", save_many)
    router.add("POST", "/images/create", create)
    router.add("POST", "/images/load", load)
    router.add("POST", "/images/prune", prune)
    router.add("GET", "/images/{name:.+}/json", inspect_image)
    router.add("GET", "/images/{name:.+}/history", history)
    router.add("GET", "/images/{name:.+}/get", save_one)
    router.add("POST", "/images/{name:.+}/tag", tag)
    router.add("POST", "/images/{name:.+}/push", push)
    router.add("POST", "/auth", auth)
    router.add("GET", "/distribution/{name:.+}/json", distribution)
    router.add("DELETE", "/images/{name:.+}", remove)
