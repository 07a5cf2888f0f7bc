"""The registry's storage: blobs in a content store, repositories as small files beside it.

    <root>/content/                     blobs (dockyard.content.ContentStore: verified, atomic)
    <root>/repositories/<name>/
        blobs/<algorithm>/<encoded>     an empty file: this blob belongs to the repository
        manifests/<algorithm>/<encoded> the manifest's media type: this manifest is in the repository
        tags/<tag>                      the digest the tag points to
    <root>/uploads/<uuid>               upload sessions' data (a content store writer each)

A blob is served only from a repository it was pushed to (or mounted into). Tags and links are
written atomically (temp file, rename), so a crash never leaves a tag pointing at half a file,
and a manifest is linked only after every blob it references is in the repository.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time

from dockyard.content.store import BlobInfo, ContentStore
from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.types.digest import Digest, Digester, InvalidDigest
from dockyard.types.oci import INDEX_TYPES, InvalidDocument, UnknownMediaType, document_media_type, parse_index, \
    parse_manifest
from dockyard.utils.fileio import write_atomic

NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
MAX_MANIFEST = 4 << 20
UPLOAD_IDLE_SECONDS = 3600.0


class RegistryError(DockyardError):
    """An error with a distribution-spec code (BLOB_UNKNOWN, MANIFEST_INVALID, ...)."""

    def __init__(self, code: str, message: str, status: int, detail: object = None) -> None:
        super().__init__(message)
        self.code, self.status, self.detail = code, status, detail


def name_invalid(name: str) -> RegistryError:
    return RegistryError("NAME_INVALID", f"invalid repository name {name!r}", 400)


class Upload:
    """An upload session: its data in <root>/uploads/<uuid>/data, its repository beside it, so
    that a restarted server resumes it (the hash is then rebuilt from the data once)."""

    def __init__(self, directory: str, uuid: str, name: str) -> None:
        self.uuid, self.name = uuid, name
        self.dir = directory
        self.path = os.path.join(directory, "data")
        self.touched = time.monotonic()
        self._digester: Digester | None = None

    @property
    def size(self) -> int:
        try:
            return os.path.getsize(self.path)
        except FileNotFoundError:
            return 0

    def digester(self) -> Digester:
        if self._digester is None:  # a session from before a restart: hash what is there
            d = Digester()
            with open(self.path, "rb") as f:
                while chunk := f.read(1 << 20):
                    d.update(chunk)
            self._digester = d
        return self._digester

    def append(self, data: bytes) -> None:
        d = self.digester()
        with open(self.path, "ab") as f:
            f.write(data)
        d.update(data)


class RegistryStorage:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.content = ContentStore(os.path.join(self.root, "content"))
        self.content.recover()
        self.repos = os.path.join(self.root, "repositories")
        self.uploads_dir = os.path.join(self.root, "uploads")
        for d in (self.repos, self.uploads_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self.uploads: dict[str, Upload] = {}

    # --- names ---

    def repo_dir(self, name: str) -> str:
        if not NAME_RE.match(name) or len(name) > 255:
            raise name_invalid(name)
        return os.path.join(self.repos, name)

    @staticmethod
    def digest(text: str) -> Digest:
        try:
            return Digest.parse(text)
        except InvalidDigest as e:
            raise RegistryError("DIGEST_INVALID", str(e), 400) from None

    def _link(self, name: str, kind: str, digest: Digest, value: bytes = b"") -> None:
        path = os.path.join(self.repo_dir(name), kind, digest.algorithm, digest.encoded)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_atomic(path, value, 0o600, sync=False)

    def _linked(self, name: str, kind: str, digest: Digest) -> str | None:
        path = os.path.join(self.repo_dir(name), kind, digest.algorithm, digest.encoded)
        return path if os.path.exists(path) else None

    def catalog(self) -> list[str]:
        out = []
        for dirpath, dirnames, _ in os.walk(self.repos):
            if "tags" in dirnames or "manifests" in dirnames or "blobs" in dirnames:
                out.append(os.path.relpath(dirpath, self.repos))
                dirnames[:] = [d for d in dirnames if d not in ("tags", "manifests", "blobs")]
        return sorted(out)

    # --- blobs ---

    def blob(self, name: str, digest: Digest) -> BlobInfo:
        if self._linked(name, "blobs", digest) is None or not self.content.exists(digest):
            raise RegistryError("BLOB_UNKNOWN", f"blob unknown to registry: {digest}", 404, {"digest": str(digest)})
        return self.content.info(digest)

    def blob_path(self, name: str, digest: Digest) -> str:
        self.blob(name, digest)
        return self.content.path(digest)

    def delete_blob(self, name: str, digest: Digest) -> None:
        path = self._linked(name, "blobs", digest)
        if path is None:
            raise RegistryError("BLOB_UNKNOWN", f"blob unknown to registry: {digest}", 404, {"digest": str(digest)})
        os.unlink(path)

    def mount(self, name: str, digest: Digest, source: str) -> bool:
        """Cross-repository mount: link a blob of `source` into `name` without uploading it."""
        try:
            self.blob(source, digest)
        except RegistryError:
            return False
        self._link(name, "blobs", digest)
        return True

    # --- uploads ---

    def start_upload(self, name: str) -> Upload:
        self.repo_dir(name)
        self._expire_uploads()
        uuid = secrets.token_hex(16)
        directory = os.path.join(self.uploads_dir, uuid)
        os.mkdir(directory, 0o700)
        write_atomic(os.path.join(directory, "name"), name.encode(), 0o600, sync=False)
        open(os.path.join(directory, "data"), "wb").close()
        upload = Upload(directory, uuid, name)
        self.uploads[uuid] = upload
        return upload

    def upload(self, name: str, uuid: str) -> Upload:
        upload = self.uploads.get(uuid)
        if upload is None and re.fullmatch(r"[0-9a-f]{32}", uuid):
            directory = os.path.join(self.uploads_dir, uuid)
            try:
                with open(os.path.join(directory, "name")) as f:
                    upload = self.uploads[uuid] = Upload(directory, uuid, f.read())
            except FileNotFoundError:
                upload = None
        if upload is None or upload.name != name:
            raise RegistryError("BLOB_UPLOAD_UNKNOWN", f"blob upload unknown to registry: {uuid}", 404)
        upload.touched = time.monotonic()
        return upload

    def finish_upload(self, upload: Upload, digest: Digest) -> BlobInfo:
        try:
            d = upload.digester()
            if digest.algorithm != d.algorithm or d.digest() != digest:
                raise RegistryError("DIGEST_INVALID", f"digest mismatch: the upload has {d.digest()}, not {digest}",
                                    400, {"digest": str(digest)})
            info = self.content.adopt(upload.path, digest, d.size)
        finally:
            self._drop(upload)
        self._link(upload.name, "blobs", info.digest)
        return info

    def cancel_upload(self, upload: Upload) -> None:
        self._drop(upload)

    def _drop(self, upload: Upload) -> None:
        self.uploads.pop(upload.uuid, None)
        shutil.rmtree(upload.dir, ignore_errors=True)

    def _expire_uploads(self) -> None:
        """Sessions idle for an hour are dropped (also those left by an earlier run)."""
        now = time.monotonic()
        for upload in [u for u in self.uploads.values() if now - u.touched > UPLOAD_IDLE_SECONDS]:
            self._drop(upload)
        for uuid in os.listdir(self.uploads_dir):
            if uuid not in self.uploads:
                path = os.path.join(self.uploads_dir, uuid)
                try:
                    if time.time() - os.path.getmtime(path) > UPLOAD_IDLE_SECONDS:
                        shutil.rmtree(path, ignore_errors=True)
                except FileNotFoundError:
                    pass

    # --- garbage collection ---

    def garbage_collect(self, dry_run: bool = False) -> list[Digest]:
        """Remove blobs no repository links to and no manifest references; what was (or would be) removed."""
        keep: set[str] = set()
        for dirpath, _, filenames in os.walk(self.repos):
            parts = dirpath.split(os.sep)
            if len(parts) >= 2 and parts[-2] in ("blobs", "manifests"):
                for encoded in filenames:
                    if not encoded.startswith("."):
                        keep.add(f"{parts[-1]}:{encoded}")
        removed = []
        for info in self.content.walk():
            if str(info.digest) not in keep:
                removed.append(info.digest)
                if not dry_run:
                    self.content.delete(info.digest)
        return removed

    # --- manifests and tags ---

    def resolve(self, name: str, reference: str) -> Digest:
        """A tag or a digest -> the manifest digest (MANIFEST_UNKNOWN if not in the repository)."""
        if ":" in reference:
            digest = self.digest(reference)
        else:
            if not TAG_RE.match(reference):
                raise RegistryError("TAG_INVALID", f"invalid tag {reference!r}", 400)
            try:
                with open(os.path.join(self.repo_dir(name), "tags", reference)) as f:
                    digest = self.digest(f.read().strip())
            except FileNotFoundError:
                raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: {name}:{reference}", 404) from None
        if self._linked(name, "manifests", digest) is None:
            raise RegistryError("MANIFEST_UNKNOWN", f"manifest unknown: {name}@{digest}", 404)
        return digest

    def manifest(self, name: str, reference: str) -> tuple[Digest, str, str]:
        """(digest, media type, path of the bytes)."""
        digest = self.resolve(name, reference)
        link = self._linked(name, "manifests", digest)
        assert link is not None
        with open(link) as f:
            media_type = f.read().strip()
        return digest, media_type, self.content.path(digest)

    def put_manifest(self, name: str, reference: str, data: bytes, content_type: str | None) -> Digest:
        self.repo_dir(name)
        if len(data) > MAX_MANIFEST:
            raise RegistryError("SIZE_INVALID", f"manifest larger than {MAX_MANIFEST} bytes", 400)
        try:
            media_type = document_media_type(data, (content_type or "").split(";")[0].strip() or None)
            if media_type in INDEX_TYPES:
                index = parse_index(data, media_type)
                for desc in index.manifests:
                    if self._linked(name, "manifests", desc.digest) is None:
                        raise RegistryError("MANIFEST_UNKNOWN", f"index references an unknown manifest {desc.digest}",
                                            400, {"digest": str(desc.digest)})
            else:
                manifest = parse_manifest(data, media_type)
                for desc in [manifest.config, *manifest.layers]:
                    try:
                        self.blob(name, desc.digest)
                    except RegistryError:
                        raise RegistryError("MANIFEST_BLOB_UNKNOWN", f"blob unknown to registry: {desc.digest}",
                                            400, {"digest": str(desc.digest)}) from None
        except (InvalidDocument, UnknownMediaType, InvalidArgument) as e:
            if isinstance(e, RegistryError):
                raise
            raise RegistryError("MANIFEST_INVALID", f"manifest invalid: {e}", 400) from None
        info = self.content.put(data)
        if ":" in reference:
            wanted = self.digest(reference)
            if wanted != info.digest:
                raise RegistryError("DIGEST_INVALID", f"the manifest's digest is {info.digest}, not {wanted}", 400)
        elif not TAG_RE.match(reference):
            raise RegistryError("TAG_INVALID", f"invalid tag {reference!r}", 400)
        self._link(name, "manifests", info.digest, media_type.encode())
        self._record_referrer(name, data, media_type, info.digest)
        if ":" not in reference:
            path = os.path.join(self.repo_dir(name), "tags", reference)
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            write_atomic(path, str(info.digest).encode(), 0o600)
        return info.digest

    def cache_manifest(self, name: str, reference: str, data: bytes, media_type: str, digest: Digest) -> None:
        """Pull-through cache: keep a manifest fetched (and verified) from the upstream registry;
        its blobs are fetched when they are asked for."""
        info = self.content.put(data, digest)
        self._link(name, "manifests", info.digest, media_type.encode())
        if ":" not in reference and TAG_RE.match(reference):
            path = os.path.join(self.repo_dir(name), "tags", reference)
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            write_atomic(path, str(info.digest).encode(), 0o600)

    def cache_blob(self, name: str, digest: Digest) -> None:
        self._link(name, "blobs", digest)

    def _record_referrer(self, name: str, data: bytes, media_type: str, digest: Digest) -> None:
        """A manifest with a `subject` (a signature, an SBOM...) is listed by the referrers API."""
        import json

        try:
            doc = json.loads(data)
            subject = self.digest(str(doc["subject"]["digest"]))
        except (ValueError, KeyError, TypeError, RegistryError):
            return
        artifact_type = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType") or ""
        entry = {"mediaType": media_type, "digest": str(digest), "size": len(data)}
        if artifact_type:
            entry["artifactType"] = artifact_type
        if isinstance(doc.get("annotations"), dict) and doc["annotations"]:
            entry["annotations"] = doc["annotations"]
        path = os.path.join(self.repo_dir(name), "referrers", subject.algorithm, subject.encoded, digest.encoded)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_atomic(path, json.dumps(entry).encode(), 0o600, sync=False)

    def referrers(self, name: str, subject: Digest, artifact_type: str | None = None) -> list[dict[str, object]]:
        import json

        directory = os.path.join(self.repo_dir(name), "referrers", subject.algorithm, subject.encoded)
        out = []
        for encoded in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
            if encoded.startswith("."):
                continue
            with open(os.path.join(directory, encoded)) as f:
                entry = json.load(f)
            if self._linked(name, "manifests", self.digest(entry["digest"])) is None:
                continue  # deleted since
            if artifact_type and entry.get("artifactType") != artifact_type:
                continue
            out.append(entry)
        return out

    def delete_manifest(self, name: str, reference: str) -> None:
        if ":" not in reference:
            raise RegistryError("UNSUPPORTED", "delete a manifest by digest (tags are removed with it)", 400)
        digest = self.resolve(name, reference)
        tags_dir = os.path.join(self.repo_dir(name), "tags")
        for tag in self.tags(name):
            with open(os.path.join(tags_dir, tag)) as f:
                if f.read().strip() == str(digest):
                    os.unlink(os.path.join(tags_dir, tag))
        link = self._linked(name, "manifests", digest)
        if link is not None:
            os.unlink(link)

    def tags(self, name: str) -> list[str]:
        directory = os.path.join(self.repo_dir(name), "tags")
        if not os.path.isdir(os.path.dirname(directory)):
            raise RegistryError("NAME_UNKNOWN", f"repository name not known to registry: {name}", 404)
        try:
            return sorted(t for t in os.listdir(directory) if not t.startswith("."))
        except FileNotFoundError:
            return []


__all__ = ["RegistryStorage", "RegistryError", "Upload", "NotFound"]
