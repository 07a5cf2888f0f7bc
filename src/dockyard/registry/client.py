"""A distribution-API client that pulls images into the image store (blocking: run it in a thread).

The registry of a reference is its domain. HTTPS is used, except for insecure registries
(loopback addresses and `localhost`, like dockerd, plus the ones configured), which are tried
with HTTPS first and then plain HTTP. A registry answering 401 with a Bearer challenge gets an
anonymous (or basic-auth) token from its realm, as Docker does.

Every blob is streamed into the content store against its announced digest and size, so a
tampered or truncated download is refused and nothing half-written is ever visible; the image
is recorded only after all of it is there and unpacked (an interrupted pull leaves no image).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import json
import socket
import ssl
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dockyard.errors import DockyardError, InvalidArgument, NotFound, Unauthorized
from dockyard.types.digest import Digest
from dockyard.types.oci import INDEX_TYPES, MANIFEST_TYPES, Descriptor, document_media_type, parse_index, \
    parse_manifest
from dockyard.types.reference import DEFAULT_DOMAIN, Reference, parse_image

ACCEPT = ", ".join([*MANIFEST_TYPES, *INDEX_TYPES])
MAX_MANIFEST = 4 << 20
TIMEOUT = 60.0
RESUME_ATTEMPTS = 3
DOWNLOAD_THREADS = 3
Progress = Callable[[dict[str, Any]], None]


class RegistryUnavailable(DockyardError):
    """The registry could not be reached or answered with an error."""


@dataclass
class Credentials:
    username: str
    password: str


def is_insecure(host: str, configured: list[str] | None = None) -> bool:
    hostname = host.rsplit(":", 1)[0].strip("[]") if not host.startswith("[") or "]:" in host else host.strip("[]")
    if host in (configured or []) or hostname in (configured or []) or hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


class RegistryClient:
    def __init__(self, host: str, *, insecure: bool = False, credentials: Credentials | None = None,
                 timeout: float = TIMEOUT) -> None:
        self.host = "registry-1.docker.io" if host == DEFAULT_DOMAIN else host
        self.insecure = insecure
        self.credentials = credentials
        self.timeout = timeout
        self.scheme: str | None = None
        self._authorization: str | None = None
        self._scopes: list[str] = []  # every scope asked for so far: one token covers them all

    # --- transport ---

    def _connect(self, scheme: str, host: str) -> http.client.HTTPConnection:
        if scheme == "https":
            context = ssl.create_default_context()
            return http.client.HTTPSConnection(host, timeout=self.timeout, context=context)
        return http.client.HTTPConnection(host, timeout=self.timeout)

    def _schemes(self) -> list[str]:
        if self.scheme:
            return [self.scheme]
        return ["https", "http"] if self.insecure else ["https"]

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: Any = None) -> http.client.HTTPResponse:
        """One request (following redirects, answering a Bearer challenge once); the open response."""
        last_error: Exception | None = None
        for scheme in self._schemes():
            try:
                response = self._request(scheme, self.host, method, path, headers or {}, body)
            except (ssl.SSLError, ConnectionError, socket.timeout, OSError) as e:
                last_error = e
                continue
            self.scheme = scheme
            return response
        raise RegistryUnavailable(f"cannot reach registry {self.host}: {last_error}")

    def _request(self, scheme: str, host: str, method: str, path: str, headers: dict[str, str],
                 body: Any, redirects: int = 5, retried: bool = False) -> http.client.HTTPResponse:
        conn = self._connect(scheme, host)
        all_headers = {"User-Agent": "dockyard", **headers}
        if self._authorization and host == self.host:
            all_headers["Authorization"] = self._authorization
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        if response.status in (301, 302, 303, 307, 308) and redirects > 0:
            location = response.getheader("Location") or ""
            response.read()
            conn.close()
            url = urllib.parse.urlsplit(urllib.parse.urljoin(f"{scheme}://{host}{path}", location))
            target = url.path + (f"?{url.query}" if url.query else "")
            return self._request(url.scheme, url.netloc, "GET" if response.status == 303 else method, target,
                                 {k: v for k, v in headers.items() if k != "Authorization"}, body, redirects - 1, retried)
        if response.status == 401 and not retried:
            challenge = response.getheader("WWW-Authenticate") or ""
            response.read()
            conn.close()
            self._authenticate(challenge)
            if hasattr(body, "seek"):
                body.seek(0)  # a file body is sent again from its start
            return self._request(scheme, host, method, path, headers, body, redirects, True)
        return response

    def _authenticate(self, challenge: str) -> None:
        kind, _, params_text = challenge.partition(" ")
        if kind.lower() == "basic":
            if self.credentials is None:
                raise AuthenticationFailed(f"registry {self.host}: authentication required (docker login {self.host})")
            raw = f"{self.credentials.username}:{self.credentials.password}".encode()
            self._authorization = "Basic " + base64.b64encode(raw).decode()
            return
        if kind.lower() != "bearer":
            raise RegistryUnavailable(f"registry {self.host}: unsupported authentication challenge {challenge!r}")
        params = dict(_challenge_params(params_text))
        realm = params.pop("realm", "")
        if not realm:
            raise RegistryUnavailable(f"registry {self.host}: authentication challenge without a realm")
        url = urllib.parse.urlsplit(realm)
        if params.get("scope") and params["scope"] not in self._scopes:
            self._scopes.append(params["scope"])
        query = urllib.parse.urlencode([("service", params.get("service", ""))] + [("scope", x) for x in self._scopes])
        conn = self._connect(url.scheme, url.netloc)
        headers = {"User-Agent": "dockyard"}
        if self.credentials is not None:
            raw = f"{self.credentials.username}:{self.credentials.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        conn.request("GET", f"{url.path or '/'}?{query}", headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        if response.status == 401:
            raise AuthenticationFailed(f"registry {self.host}: unauthorized: invalid username or password")
        if response.status != 200:
            raise RegistryUnavailable(f"registry {self.host}: token request refused ({response.status})")
        try:
            value = json.loads(data)
            self._authorization = "Bearer " + str(value.get("token") or value.get("access_token"))
        except (ValueError, AttributeError):
            raise RegistryUnavailable(f"registry {self.host}: invalid token response") from None

    # --- documents and blobs ---

    def manifest(self, name: str, reference: str) -> tuple[bytes, str, Digest]:
        """(bytes, media type, digest) of a manifest or index, verified when asked for by digest."""
        response = self.request("GET", f"/v2/{name}/manifests/{reference}", {"Accept": ACCEPT})
        data = response.read(MAX_MANIFEST + 1)
        _refused(response.status, self.host, data)
        if response.status == 404:
            raise NotFound(f"manifest for {self.host}/{name}:{reference} not found: manifest unknown")
        if response.status != 200:
            raise RegistryUnavailable(f"registry {self.host}: manifest {name}:{reference}: {_error_text(response.status, data)}")
        if len(data) > MAX_MANIFEST:
            raise InvalidArgument(f"manifest {name}:{reference} is larger than {MAX_MANIFEST} bytes")
        media_type = document_media_type(data, (response.getheader("Content-Type") or "").split(";")[0] or None)
        digest = Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())
        if ":" in reference and Digest.parse(reference) != digest:
            raise InvalidArgument(f"manifest {name}@{reference}: the registry sent content with digest {digest}")
        return data, media_type, digest

    def fetch_blob(self, name: str, desc: Descriptor, store: Any, progress: Progress | None = None) -> Any:
        """Stream a blob into the content store, verified against the descriptor; its BlobInfo
        (`created` when this call added it). A transfer cut short is resumed with a Range request
        (up to RESUME_ATTEMPTS times) from where it stopped."""
        if store.content.exists(desc.digest):
            return store.content.info(desc.digest)
        with store.content.writer(desc.digest, desc.size) as writer:
            attempts = 0
            while True:
                headers = {"Range": f"bytes={writer.written}-"} if writer.written else {}
                try:
                    response = self.request("GET", f"/v2/{name}/blobs/{desc.digest}", headers)
                    if response.status not in (200, 206) or (writer.written and response.status != 206):
                        data = response.read(65536)
                        _refused(response.status, self.host, data)
                        raise RegistryUnavailable(f"registry {self.host}: blob {desc.digest}: "
                                                  f"{_error_text(response.status, data)}")
                    while chunk := response.read(1 << 20):
                        writer.write(chunk)
                        if progress is not None:
                            progress({"status": "Downloading", "id": desc.digest.encoded[:12],
                                      "progressDetail": {"current": writer.written, "total": desc.size}})
                except (http.client.IncompleteRead, ConnectionError, socket.timeout) as e:
                    attempts += 1
                    if attempts > RESUME_ATTEMPTS:
                        raise RegistryUnavailable(f"registry {self.host}: blob {desc.digest}: transfer failed "
                                                  f"after {writer.written} of {desc.size} bytes: {e}") from None
                    continue
                if writer.written < desc.size:  # the connection ended early without an error
                    attempts += 1
                    if attempts > RESUME_ATTEMPTS:
                        raise RegistryUnavailable(f"registry {self.host}: blob {desc.digest}: transfer failed "
                                                  f"after {writer.written} of {desc.size} bytes")
                    continue
                return writer.commit()


def login(host: str, credentials: Credentials, insecure_registries: list[str] | None = None) -> None:
    """Check credentials against a registry (GET /v2/ answering its challenge); raises if refused."""
    if host in (DEFAULT_DOMAIN, "index.docker.io", "https://index.docker.io/v1/"):
        raise InvalidArgument("logging in to Docker Hub is not enabled (log in to another registry)")
    client = RegistryClient(host, insecure=is_insecure(host, insecure_registries), credentials=credentials)
    try:
        response = client.request("GET", "/v2/")
    except AuthenticationFailed:
        raise AuthenticationFailed(f"login attempt to {client.scheme or 'https'}://{host}/v2/ failed with status: "
                                   "401 Unauthorized") from None
    response.read()
    if response.status == 401:
        raise AuthenticationFailed(f"login attempt to {client.scheme or 'https'}://{host}/v2/ failed with status: "
                                   "401 Unauthorized")
    if response.status != 200:
        raise RegistryUnavailable(f"login attempt to {host}: HTTP {response.status}")


class AuthenticationFailed(Unauthorized):
    """The registry refused the credentials."""


def distribution(ref: Reference, *, insecure_registries: list[str] | None = None,
                 credentials: Credentials | None = None) -> dict[str, Any]:
    """`GET /distribution/{name}/json`: the registry's descriptor for a reference, and its platforms."""
    if ref.domain == DEFAULT_DOMAIN:
        raise NotFound(f"{ref.familiar_name}: Docker Hub is not enabled")
    client = RegistryClient(ref.domain, insecure=is_insecure(ref.domain, insecure_registries), credentials=credentials)
    reference = str(ref.digest) if ref.digest is not None else (ref.tag or "latest")
    data, media_type, digest = client.manifest(ref.path, reference)
    platforms: list[dict[str, Any]] = []
    if media_type in INDEX_TYPES:
        for desc in parse_index(data, media_type).manifests:
            if desc.platform is not None:
                p = desc.platform
                platforms.append({k: v for k, v in (("architecture", p.architecture), ("os", p.os),
                                                     ("variant", p.variant)) if v})
    else:
        manifest = parse_manifest(data, media_type)
        response = client.request("GET", f"/v2/{ref.path}/blobs/{manifest.config.digest}")
        config = json.loads(response.read(1 << 20) or b"{}")
        platforms.append({k: v for k, v in (("architecture", config.get("architecture")), ("os", config.get("os")),
                                             ("variant", config.get("variant"))) if v})
    return {"Descriptor": {"mediaType": media_type, "digest": str(digest), "size": len(data)}, "Platforms": platforms}


def _refused(status: int, host: str, data: bytes) -> None:
    if status in (401, 403):
        raise AuthenticationFailed(f"registry {host}: {_error_text(status, data)} (docker login {host})")


def _challenge_params(text: str) -> list[tuple[str, str]]:
    out = []
    for part in text.split(","):
        key, _, value = part.strip().partition("=")
        if key:
            out.append((key.strip(), value.strip().strip('"')))
    return out


def _error_text(status: int, data: bytes) -> str:
    try:
        errors = json.loads(data).get("errors") or []
        if errors:
            return f"{status} {errors[0].get('code')}: {errors[0].get('message')}"
    except (ValueError, AttributeError):
        pass
    return f"HTTP {status}"


def mirror_host(mirror: str) -> str:
    """`http://127.0.0.1:5000/` or `127.0.0.1:5000` -> `127.0.0.1:5000`."""
    text = mirror.strip()
    if "://" in text:
        text = urllib.parse.urlsplit(text).netloc
    return text.rstrip("/")


def pull(store: Any, ref: Reference, *, insecure_registries: list[str] | None = None,
         credentials: Credentials | None = None, progress: Progress | None = None,
         mirrors: list[str] | None = None) -> Any:
    """Pull `ref` into the image store; the recorded image (named `ref` and by its repo digest).

    Docker Hub names are pulled from the `mirrors` (in order) when some are configured."""
    if ref.domain == DEFAULT_DOMAIN and mirrors:
        errors = []
        for mirror in mirrors:
            host = mirror_host(mirror)
            try:
                return _pull_from(store, ref, RegistryClient(host, insecure=is_insecure(host, insecure_registries)
                                                             or mirror.startswith("http://")), progress)
            except (RegistryUnavailable, NotFound) as e:
                errors.append(f"{host}: {e}")
        raise NotFound(f"{ref.familiar_name}: not found on any registry mirror ({'; '.join(errors)})")
    client = RegistryClient(ref.domain, insecure=is_insecure(ref.domain, insecure_registries), credentials=credentials)
    return _pull_from(store, ref, client, progress)


def _pull_from(store: Any, ref: Reference, client: RegistryClient, progress: Progress | None) -> Any:
    try:
        return _pull_from_registry(store, ref, client, progress)
    except AuthenticationFailed as e:
        # dockerd's answer (a 404, not a 401: the docker CLI would prompt for a login on a 401)
        raise NotFound(f"pull access denied for {ref.familiar_name}, repository does not exist or may require "
                       f"'docker login': {e}") from None


def _pull_from_registry(store: Any, ref: Reference, client: RegistryClient, progress: Progress | None) -> Any:
    name = ref.path
    reference = str(ref.digest) if ref.digest is not None else (ref.tag or "latest")
    with store.operation() as op:
        data, media_type, digest = client.manifest(name, reference)
        op.note(store.content.put(data, digest))
        target = Descriptor(media_type, digest, len(data))
        if media_type in INDEX_TYPES:
            chosen = parse_index(data, media_type).select(store.platform)
            child, child_type, child_digest = client.manifest(name, str(chosen.digest))
            op.note(store.content.put(child, child_digest))
            manifest = parse_manifest(child, child_type)
        else:
            manifest = parse_manifest(data, media_type)
        op.note(client.fetch_blob(name, manifest.config, store, progress))
        with ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS, thread_name_prefix="pull") as pool:
            futures = {desc.digest: pool.submit(client.fetch_blob, name, desc, store, progress)
                       for desc in manifest.layers}

            def blob_ready(digest: Digest) -> None:
                """Called by the unpacking threads: each layer is unpacked as soon as it is here."""
                futures[digest].result()
                if progress is not None:
                    progress({"status": "Download complete", "id": digest.encoded[:12]})

            try:
                image = store.create(op, target, [ref] if ref.digest is None else [], repo_digest=True,
                                     blob_ready=blob_ready)
            finally:
                for future in futures.values():
                    future.cancel()
                for future in futures.values():  # noted even after a failure: the undo removes them
                    if not future.cancelled():
                        try:
                            op.note(future.result())
                        except BaseException:  # noqa: BLE001 - its error is (or was) raised by create
                            pass
        return image


class _CountingReader:
    """A blob being uploaded: reports "Pushing" progress (about every MiB) as http.client reads it."""

    STEP = 1 << 20

    def __init__(self, blob: Any, desc: Descriptor, progress: Progress) -> None:
        self.blob = blob
        self.desc = desc
        self.progress = progress
        self.sent = 0
        self.reported = 0

    def read(self, size: int = -1) -> bytes:
        data = self.blob.read(size)
        self.sent += len(data)
        if data and (self.sent - self.reported >= self.STEP or self.sent == self.desc.size):
            self.reported = self.sent
            self.progress({"status": "Pushing", "id": self.desc.digest.encoded[:12],
                           "progressDetail": {"current": self.sent, "total": self.desc.size}})
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self.blob.seek(offset, whence)
        self.sent = self.reported = int(position)
        return int(position)


def _push_blob(client: RegistryClient, name: str, desc: Descriptor, store: Any, progress: Progress | None,
               mount_from: list[str] | None = None) -> None:
    head = client.request("HEAD", f"/v2/{name}/blobs/{desc.digest}")
    head.read()
    if head.status == 200:
        if progress is not None:
            progress({"status": "Layer already exists", "id": desc.digest.encoded[:12]})
        return
    start = None
    for source in mount_from or []:  # the same registry may have it in another repository
        if source == name:
            continue
        query = urllib.parse.urlencode({"mount": str(desc.digest), "from": source})
        attempt = client.request("POST", f"/v2/{name}/blobs/uploads/?{query}")
        attempt.read(65536)
        if attempt.status == 201:
            if progress is not None:
                progress({"status": f"Mounted from {source}", "id": desc.digest.encoded[:12]})
            return
        start = attempt  # 202: the registry opened an ordinary upload instead
        break
    if start is None:
        start = client.request("POST", f"/v2/{name}/blobs/uploads/")
        body = start.read(65536)
        _refused(start.status, client.host, body)
    if start.status not in (201, 202):
        raise RegistryUnavailable(f"registry {client.host}: cannot start an upload to {name} (HTTP {start.status})")
    location = start.getheader("Location") or ""
    url = urllib.parse.urlsplit(location)
    query_pairs = urllib.parse.parse_qsl(url.query) + [("digest", str(desc.digest))]
    path = (url.path or f"/v2/{name}/blobs/uploads/") + "?" + urllib.parse.urlencode(query_pairs)
    with store.content.open(desc.digest) as blob:  # streamed from the content store
        body = blob if progress is None else _CountingReader(blob, desc, progress)
        done = client.request("PUT", path, {"Content-Type": "application/octet-stream",
                                            "Content-Length": str(desc.size)}, body)
        body = done.read(65536)
    if done.status != 201:
        raise RegistryUnavailable(f"registry {client.host}: upload of {desc.digest}: {_error_text(done.status, body)}")
    if progress is not None:
        progress({"status": "Pushed", "id": desc.digest.encoded[:12]})


def _push_manifest(client: RegistryClient, name: str, reference: str, data: bytes, media_type: str) -> None:
    response = client.request("PUT", f"/v2/{name}/manifests/{reference}", {"Content-Type": media_type}, data)
    body = response.read(65536)
    _refused(response.status, client.host, body)
    if response.status != 201:
        raise RegistryUnavailable(f"registry {client.host}: manifest {name}:{reference}: {_error_text(response.status, body)}")


def push(store: Any, ref: Reference, *, insecure_registries: list[str] | None = None,
         credentials: Credentials | None = None, progress: Progress | None = None) -> tuple[Digest, int]:
    """Push the local image named `ref` (its blobs, then its manifest(s), then the tag); the
    digest and size of what the tag now points to."""
    if ref.domain == DEFAULT_DOMAIN:
        raise InvalidArgument("pushing to Docker Hub is not enabled (push to another registry, e.g. localhost:5000/name)")
    image = store.get(str(ref))
    client = RegistryClient(ref.domain, insecure=is_insecure(ref.domain, insecure_registries), credentials=credentials)
    target = image.target
    documents: list[tuple[Descriptor, bytes]] = []
    manifests: list[Descriptor] = [target]
    if target.media_type in INDEX_TYPES:
        index = parse_index(store.content.read(target.digest), target.media_type)
        manifests = [d for d in index.manifests if store.content.exists(d.digest) and d.media_type in MANIFEST_TYPES]
    sources = []
    for known in (*image.repo_tags, *image.repo_digests):
        try:
            other = parse_image(known)
        except InvalidArgument:
            continue
        if other.domain == ref.domain and other.path != ref.path and other.path not in sources:
            sources.append(other.path)
    for desc in manifests:
        data = store.content.read(desc.digest)
        manifest = parse_manifest(data, desc.media_type)
        for blob in [*manifest.layers, manifest.config]:
            _push_blob(client, ref.path, blob, store, progress, sources)
        documents.append((desc, data))
    tag = ref.tag or "latest"
    if target.media_type in INDEX_TYPES:
        for desc, data in documents:
            _push_manifest(client, ref.path, str(desc.digest), data, desc.media_type)
        index_data = store.content.read(target.digest)
        _push_manifest(client, ref.path, tag, index_data, target.media_type)
        return target.digest, len(index_data)
    desc, data = documents[0]
    _push_manifest(client, ref.path, tag, data, desc.media_type)
    return desc.digest, len(data)
