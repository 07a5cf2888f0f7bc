"""The OCI distribution API (v2) over RegistryStorage: what `docker push/pull` and skopeo speak.

Blob uploads: monolithic (POST ?digest=), chunked (POST, PATCH..., PUT ?digest=), streamed
(POST, PUT with the body) and cross-repository mounts (POST ?mount=&from=). Manifests by tag or
digest, tags list with pagination, catalog, deletes. Errors are the spec's
`{"errors": [{"code", "message", "detail"}]}`. Authentication and TLS come later; until then
the server listens where it is told (tests: loopback or a test network namespace).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from dockyard.errors import DockyardError
from dockyard.registry.auth import Access, AuthError
from dockyard.registry.storage import MAX_MANIFEST, RegistryError, RegistryStorage, Upload

log = logging.getLogger("dockyard.registry")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STORAGE: web.AppKey[RegistryStorage] = web.AppKey("storage", RegistryStorage)
READ_ONLY: web.AppKey[bool] = web.AppKey("read_only", bool)
AUTH: web.AppKey[Any] = web.AppKey("auth", object)
UPSTREAM: web.AppKey[Any] = web.AppKey("upstream", object)
_ACTIONS = {"GET": "pull", "HEAD": "pull", "POST": "push", "PUT": "push", "PATCH": "push", "DELETE": "delete"}


def _needed(request: web.Request) -> Access:
    name = request.match_info.get("name")
    if name:
        return Access("repository", name, (_ACTIONS.get(request.method, "push"),))
    if request.path.startswith("/v2/_catalog"):
        return Access("registry", "catalog", ("*",))
    return Access("registry", "base", ())
API_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
CHUNK = 1 << 20


def _error(status: int, code: str, message: str, detail: Any = None) -> web.Response:
    body = {"errors": [{"code": code, "message": message, "detail": detail}]}
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json",
                        headers=API_HEADER)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        auth = request.app[AUTH]
        if auth is not None and request.path != "/token":
            try:
                auth.authorize(request.headers, _needed(request), request.host)
            except AuthError as e:
                response = _error(401, "UNAUTHORIZED", str(e))
                response.headers["WWW-Authenticate"] = e.challenge
                return response
        if request.app[READ_ONLY] and request.method not in ("GET", "HEAD"):
            raise RegistryError("UNSUPPORTED", "the registry is in read-only mode", 405)
        response = await handler(request)
    except RegistryError as e:
        return _error(e.status, e.code, str(e), e.detail)
    except web.HTTPException as e:
        if e.status == 404:
            return _error(404, "NOT_FOUND", "no such endpoint")
        if e.status == 405:
            return _error(405, "UNSUPPORTED", f"{request.method} is not supported here")
        raise
    except DockyardError as e:
        return _error(400, "UNSUPPORTED", str(e))
    except Exception as e:  # noqa: BLE001 - the boundary
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, "UNKNOWN", f"internal error: {e}")
    response.headers.update(API_HEADER)
    return response


def storage(request: web.Request) -> RegistryStorage:
    return request.app[STORAGE]


async def base(request: web.Request) -> web.Response:
    return web.json_response({})


# --- blobs ---

async def _from_upstream(request: web.Request, kind: str, name: str, reference: str) -> None:
    """Pull-through cache: fetch what this registry lacks from the upstream one (if configured)."""
    upstream = request.app[UPSTREAM]
    if upstream is None:
        return
    st = storage(request)

    def fetch() -> None:
        from dockyard.registry.client import RegistryClient, RegistryUnavailable
        from dockyard.types.oci import Descriptor

        client = RegistryClient(upstream["host"], insecure=upstream["insecure"])
        try:
            if kind == "manifest":
                data, media_type, digest = client.manifest(name, reference)
                st.cache_manifest(name, reference, data, media_type, digest)
            else:
                digest = st.digest(reference)
                head = client.request("HEAD", f"/v2/{name}/blobs/{digest}")
                head.read()
                if head.status != 200:
                    return
                size = int(head.getheader("Content-Length") or 0)

                class _Store:
                    content = st.content

                client.fetch_blob(name, Descriptor("application/octet-stream", digest, size), _Store())
                st.cache_blob(name, digest)
        except (RegistryUnavailable, DockyardError) as e:
            log.info("upstream %s: %s %s:%s: %s", upstream["host"], kind, name, reference, e)

    await asyncio.get_running_loop().run_in_executor(None, fetch)


async def get_blob(request: web.Request) -> web.StreamResponse:
    st = storage(request)
    name, digest = request.match_info["name"], st.digest(request.match_info["digest"])
    try:
        info = st.blob(name, digest)
    except RegistryError:
        await _from_upstream(request, "blob", name, str(digest))
        info = st.blob(name, digest)
    headers = {"Docker-Content-Digest": str(digest), "Content-Type": "application/octet-stream",
               "Accept-Ranges": "bytes", "ETag": f'"{digest}"'}
    if request.method == "HEAD":
        headers["Content-Length"] = str(info.size)
        return web.Response(status=200, headers=headers)
    start, end = 0, info.size - 1
    status = 200
    ranges = request.headers.get("Range", "")
    if ranges.startswith("bytes=") and "," not in ranges:
        first, _, last = ranges[6:].partition("-")
        try:
            if first:
                start = int(first)
                end = int(last) if last else info.size - 1
            elif last:
                start = max(0, info.size - int(last))
        except ValueError:
            raise RegistryError("RANGE_INVALID", f"invalid range {ranges!r}", 416) from None
        if start > end or start >= info.size:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{info.size}"})
        end = min(end, info.size - 1)
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    headers["Content-Length"] = str(end - start + 1)
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    with open(st.blob_path(name, digest), "rb") as f:
        f.seek(start)
        remaining = end - start + 1
        while remaining > 0:
            chunk = await loop.run_in_executor(None, f.read, min(CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            await response.write(chunk)
    await response.write_eof()
    return response


async def delete_blob(request: web.Request) -> web.Response:
    st = storage(request)
    st.delete_blob(request.match_info["name"], st.digest(request.match_info["digest"]))
    return web.Response(status=202)


def _upload_headers(request: web.Request, upload: Upload) -> dict[str, str]:
    return {"Location": f"/v2/{upload.name}/blobs/uploads/{upload.uuid}", "Docker-Upload-UUID": upload.uuid,
            "Range": f"0-{max(upload.size - 1, 0)}", "Content-Length": "0"}


async def _append(request: web.Request, upload: Upload) -> None:
    loop = asyncio.get_running_loop()
    async for chunk in request.content.iter_chunked(CHUNK):
        await loop.run_in_executor(None, upload.append, chunk)


def _created(name: str, digest: Any) -> web.Response:
    return web.Response(status=201, headers={"Location": f"/v2/{name}/blobs/{digest}",
                                             "Docker-Content-Digest": str(digest), "Content-Length": "0"})


async def start_upload(request: web.Request) -> web.Response:
    st = storage(request)
    name = request.match_info["name"]
    st.repo_dir(name)
    mount, source = request.query.get("mount"), request.query.get("from")
    if mount and source:
        digest = st.digest(mount)
        if st.mount(name, digest, source):
            return _created(name, digest)
    upload = st.start_upload(name)
    digest_text = request.query.get("digest")
    if digest_text:  # monolithic: the whole blob in this request
        digest = st.digest(digest_text)
        try:
            await _append(request, upload)
        except BaseException:
            st.cancel_upload(upload)
            raise
        info = st.finish_upload(upload, digest)
        return _created(name, info.digest)
    return web.Response(status=202, headers=_upload_headers(request, upload))


async def patch_upload(request: web.Request) -> web.Response:
    st = storage(request)
    upload = st.upload(request.match_info["name"], request.match_info["uuid"])
    content_range = request.headers.get("Content-Range")
    if content_range:
        first, _, _ = content_range.replace("bytes ", "").partition("-")
        if not first.isdigit() or int(first) != upload.size:
            return web.Response(status=416, headers=_upload_headers(request, upload))
    await _append(request, upload)
    return web.Response(status=202, headers=_upload_headers(request, upload))


async def put_upload(request: web.Request) -> web.Response:
    st = storage(request)
    upload = st.upload(request.match_info["name"], request.match_info["uuid"])
    digest_text = request.query.get("digest")
    if not digest_text:
        raise RegistryError("DIGEST_INVALID", "the digest query parameter is required to finish an upload", 400)
    digest = st.digest(digest_text)
    try:
        await _append(request, upload)
    except BaseException:
        st.cancel_upload(upload)
        raise
    info = st.finish_upload(upload, digest)
    return _created(upload.name, info.digest)


async def upload_status(request: web.Request) -> web.Response:
    upload = storage(request).upload(request.match_info["name"], request.match_info["uuid"])
    return web.Response(status=204, headers=_upload_headers(request, upload))


async def cancel_upload(request: web.Request) -> web.Response:
    st = storage(request)
    st.cancel_upload(st.upload(request.match_info["name"], request.match_info["uuid"]))
    return web.Response(status=204)


# --- manifests ---

async def get_manifest(request: web.Request) -> web.StreamResponse:
    st = storage(request)
    name, reference = request.match_info["name"], request.match_info["reference"]
    if request.app[UPSTREAM] is not None and ":" not in reference:
        await _from_upstream(request, "manifest", name, reference)  # tags move: always ask upstream
    try:
        digest, media_type, path = st.manifest(name, reference)
    except RegistryError:
        await _from_upstream(request, "manifest", name, reference)
        digest, media_type, path = st.manifest(name, reference)
    with open(path, "rb") as f:
        data = f.read()
    headers = {"Docker-Content-Digest": str(digest), "Content-Type": media_type, "ETag": f'"{digest}"'}
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(data))
        return web.Response(status=200, headers=headers)
    return web.Response(status=200, body=data, headers=headers)


async def put_manifest(request: web.Request) -> web.Response:
    st = storage(request)
    name, reference = request.match_info["name"], request.match_info["reference"]
    data = await request.content.read(MAX_MANIFEST + 1)
    digest = st.put_manifest(name, reference, data, request.headers.get("Content-Type"))
    headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": str(digest),
               "Content-Length": "0"}
    try:
        subject = json.loads(data).get("subject") or {}
        if subject.get("digest"):
            headers["OCI-Subject"] = str(subject["digest"])
    except (ValueError, AttributeError):
        pass
    return web.Response(status=201, headers=headers)


async def referrers(request: web.Request) -> web.Response:
    st = storage(request)
    artifact_type = request.query.get("artifactType")
    found = st.referrers(request.match_info["name"], st.digest(request.match_info["digest"]), artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    body = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": found}
    return web.Response(status=200, body=json.dumps(body).encode(), headers=headers,
                        content_type="application/vnd.oci.image.index.v1+json")


async def delete_manifest(request: web.Request) -> web.Response:
    storage(request).delete_manifest(request.match_info["name"], request.match_info["reference"])
    return web.Response(status=202)


# --- listings ---

def _paginate(request: web.Request, items: list[str], path: str) -> tuple[list[str], dict[str, str]]:
    last = request.query.get("last")
    if last:
        items = [i for i in items if i > last]
    n_text = request.query.get("n")
    headers: dict[str, str] = {}
    if n_text:
        try:
            n = int(n_text)
        except ValueError:
            raise RegistryError("PAGINATION_NUMBER_INVALID", f"invalid n {n_text!r}", 400) from None
        if 0 <= n < len(items):
            items = items[:n]
            headers["Link"] = f'<{path}?n={n}&last={items[-1] if items else ""}>; rel="next"'
        elif n < 0:
            raise RegistryError("PAGINATION_NUMBER_INVALID", f"invalid n {n_text!r}", 400)
    return items, headers


async def tags_list(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    tags, headers = _paginate(request, storage(request).tags(name), f"/v2/{name}/tags/list")
    return web.json_response({"name": name, "tags": tags}, headers=headers)


async def catalog(request: web.Request) -> web.Response:
    repos, headers = _paginate(request, storage(request).catalog(), "/v2/_catalog")
    return web.json_response({"repositories": repos}, headers=headers)


async def token(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    try:
        body = auth.issue(request.headers.get("Authorization"), request.query.get("service", ""),
                          request.query.getall("scope", []))
    except AuthError as e:
        response = _error(401, "UNAUTHORIZED", str(e))
        response.headers["WWW-Authenticate"] = e.challenge
        return response
    return web.json_response(body)


def build_app(st: RegistryStorage, read_only: bool = False, auth: Any = None,
              upstream: dict[str, Any] | None = None) -> web.Application:
    """`upstream` ({"host": "h:p", "insecure": bool}) makes this a pull-through cache of that registry."""
    app = web.Application(middlewares=[errors_middleware], client_max_size=0)
    app[STORAGE] = st
    app[READ_ONLY] = read_only
    app[AUTH] = auth
    app[UPSTREAM] = upstream
    if auth is not None and auth.mode == "token":
        app.router.add_get("/token", token)
    r = app.router
    r.add_get("/v2/", base)
    r.add_get("/v2/_catalog", catalog)
    r.add_get("/v2/{name:.+}/tags/list", tags_list)
    r.add_get("/v2/{name:.+}/referrers/{digest}", referrers)
    r.add_route("GET", "/v2/{name:.+}/manifests/{reference}", get_manifest)
    r.add_route("HEAD", "/v2/{name:.+}/manifests/{reference}", get_manifest)
    r.add_put("/v2/{name:.+}/manifests/{reference}", put_manifest)
    r.add_delete("/v2/{name:.+}/manifests/{reference}", delete_manifest)
    r.add_post("/v2/{name:.+}/blobs/uploads/", start_upload)
    r.add_patch("/v2/{name:.+}/blobs/uploads/{uuid}", patch_upload)
    r.add_put("/v2/{name:.+}/blobs/uploads/{uuid}", put_upload)
    r.add_get("/v2/{name:.+}/blobs/uploads/{uuid}", upload_status)
    r.add_delete("/v2/{name:.+}/blobs/uploads/{uuid}", cancel_upload)
    r.add_route("GET", "/v2/{name:.+}/blobs/{digest}", get_blob)
    r.add_route("HEAD", "/v2/{name:.+}/blobs/{digest}", get_blob)
    r.add_delete("/v2/{name:.+}/blobs/{digest}", delete_blob)
    return app
