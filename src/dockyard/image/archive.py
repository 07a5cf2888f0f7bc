"""Save and load images: the docker-archive format (`docker save`) and the OCI image layout.

docker-archive (what `docker save` writes, and `docker load` reads):
    manifest.json                 [{"Config": "<hex>.json", "RepoTags": [...], "Layers": ["<id>/layer.tar", ...]}]
    <hex>.json                    the image config (its sha256 is the image ID)
    <id>/layer.tar, VERSION, json one uncompressed layer (a repeated layer may be a symlink)
    repositories                  {"busybox": {"latest": "<top layer id>"}} (legacy)
Docker 25+ archives are also OCI layouts (blobs/sha256/..., index.json): both parts are read.

OCI image layout (image-spec image-layout.md), as a directory or a tar of one:
    oci-layout                    {"imageLayoutVersion": "1.0.0"}
    index.json                    descriptors, named by org.opencontainers.image.ref.name (tag)
                                  and io.containerd.image.name (full name)
    blobs/<alg>/<encoded>

Loading streams the archive once: every file is ingested into the content store as it goes
by (verified against its digest when its path names one), then the images are checked,
their layers unpacked, and all of them recorded in one transaction. A bad archive changes
nothing: what it added is taken back.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dockyard.content import BlobInfo
from dockyard.errors import InvalidArgument, NotFound
from dockyard.image.model import Image
from dockyard.image.store import ImageStore, Operation, PreparedImage
from dockyard.snapshot.apply import InvalidLayer, iter_tar
from dockyard.snapshot.compression import CorruptLayer, decompressed, decompression_errors, detect
from dockyard.types.digest import Digest, DigestMismatch, InvalidDigest
from dockyard.types.oci import (
    ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_LAYOUT_VERSION,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Manifest,
    Platform,
    canonical_json,
    document_media_type,
    parse_index,
)
from dockyard.types.reference import TAG_RE, InvalidReference, Reference, parse_image, parse_reference, parse_repository
from dockyard.utils.fileio import write_atomic

DOCKER_ARCHIVE = "docker-archive"
OCI_ARCHIVE = "oci-archive"
OCI_DIR = "oci-dir"
FORMATS = (DOCKER_ARCHIVE, OCI_ARCHIVE, OCI_DIR)

_IN_MEMORY = 4 << 20          # files up to this size are kept in memory while the archive streams
_COPY = 1 << 20
_LAYER_BY_COMPRESSION = {None: OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}


class InvalidArchive(InvalidArgument):
    """An image archive that is truncated, malformed, or refers to content it does not hold."""


@dataclass
class LoadedImage:
    image: Image
    names: list[str]          # familiar names, as `docker load` prints "Loaded image: NAME"


# --- reading an archive ---------------------------------------------------------------------

@dataclass
class _Archive:
    """The files of an archive: small ones in memory, large ones already in the content store."""

    store: ImageStore
    op: Operation
    small: dict[str, bytes] = field(default_factory=dict)
    blobs: dict[str, BlobInfo] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def _resolve(self, path: str) -> str:
        seen = 0
        path = _clean(path)
        while path in self.links:
            path = self.links[path]
            seen += 1
            if seen > 16:
                raise InvalidArchive(f"archive link loop at {path!r}")
        return path

    def has(self, path: str) -> bool:
        path = self._resolve(path)
        return path in self.small or path in self.blobs

    def read(self, path: str) -> bytes:
        path = self._resolve(path)
        if path in self.small:
            return self.small[path]
        if path in self.blobs:
            return self.store.content.read(self.blobs[path].digest, max_size=_IN_MEMORY)
        raise InvalidArchive(f"archive has no file {path!r}")

    def blob(self, path: str, expected: Digest | None = None) -> BlobInfo:
        """The file at `path` as a blob of the content store (put there now if it was small)."""
        path = self._resolve(path)
        if path in self.blobs:
            info = self.blobs[path]
        elif path in self.small:
            info = self.op.note(self.store.content.put(self.small[path]))
            self.blobs[path] = info
        else:
            raise InvalidArchive(f"archive has no file {path!r}")
        if expected is not None and info.digest != expected:
            raise DigestMismatch(f"archive file {path!r} has digest {info.digest}, expected {expected}")
        return info

    def blob_by_digest(self, digest: Digest) -> BlobInfo:
        path = f"blobs/{digest.algorithm}/{digest.encoded}"
        if self.has(path):
            return self.blob(path, digest)
        if self.store.content.exists(digest):
            return self.store.content.info(digest)
        raise InvalidArchive(f"archive is missing blob {digest} ({path})")


def _clean(path: str) -> str:
    path = posixpath.normpath("/" + path).lstrip("/")
    return path


def _expected_digest(path: str) -> Digest | None:
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "blobs":
        try:
            return Digest.parse(f"{parts[1]}:{parts[2]}")
        except InvalidDigest as e:
            raise InvalidArchive(f"archive blob {path!r}: {e}") from e
    return None


def _read_archive(store: ImageStore, op: Operation, stream: BinaryIO) -> _Archive:
    archive = _Archive(store, op)
    source, _ = decompressed(stream)
    reader = io.BufferedReader(_Reader(source), _COPY)
    try:
        for info, _src in iter_tar(reader):
            name = _clean(info.name)
            if not name or info.isdir():
                continue
            if info.issym() or info.islnk():
                # docker save writes a repeated layer as a symlink to its first copy
                target = info.linkname if info.islnk() else posixpath.join(posixpath.dirname(name), info.linkname)
                joined = posixpath.normpath(target)
                if joined == ".." or joined.startswith("../") or joined.startswith("/"):
                    raise InvalidArchive(f"archive link {name!r} -> {info.linkname!r} points outside the archive")
                archive.links[name] = joined
                continue
            if not info.isreg():
                raise InvalidArchive(f"archive entry {name!r}: unexpected type {info.type!r}")
            expected = _expected_digest(name)
            if expected is None and info.size <= _IN_MEMORY:
                data = reader.read(info.size)
                if len(data) != info.size:
                    raise InvalidArchive(f"truncated archive: {name!r} ends early")
                archive.small[name] = data
                continue
            with store.content.writer(expected, info.size) as w:
                remaining = info.size
                while remaining:
                    chunk = reader.read(min(remaining, _COPY))
                    if not chunk:
                        raise InvalidArchive(f"truncated archive: {name!r} ends early")
                    w.write(chunk)
                    remaining -= len(chunk)
                archive.blobs[name] = op.note(w.commit())
    except InvalidLayer as e:
        raise InvalidArchive(f"invalid image archive: {str(e).replace('truncated layer', 'truncated archive')}") from e
    except CorruptLayer as e:
        raise InvalidArchive(f"archive stream is damaged or truncated: {e}") from e
    finally:
        if source is not stream:
            source.close()
    if not archive.small and not archive.blobs:
        raise InvalidArchive("archive is empty: no manifest.json (docker-archive) nor index.json (OCI layout)")
    return archive


class _Reader(io.RawIOBase):
    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._errors = decompression_errors()
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._source.read(len(buffer))
        except self._errors as e:
            raise CorruptLayer(str(e)) from e
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos


def _read_layout_dir(store: ImageStore, op: Operation, path: str) -> _Archive:
    archive = _Archive(store, op)
    for name in ("oci-layout", "index.json", "manifest.json", "repositories"):
        p = os.path.join(path, name)
        if os.path.isfile(p):
            with open(p, "rb") as fh:
                archive.small[name] = fh.read(_IN_MEMORY + 1)
    blobs = os.path.join(path, "blobs")
    if os.path.isdir(blobs):
        for algorithm in sorted(os.listdir(blobs)):
            for encoded in sorted(os.listdir(os.path.join(blobs, algorithm))):
                rel = f"blobs/{algorithm}/{encoded}"
                expected = _expected_digest(rel)
                with open(os.path.join(path, rel), "rb") as fh:
                    archive.blobs[rel] = op.note(store.content.ingest(fh, expected))
    return archive


def _docker_names(tags: Any) -> list[Reference]:
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidArchive("manifest.json: RepoTags must be a list of strings")
    return [parse_image(t) for t in tags]


def _docker_images(archive: _Archive) -> list[tuple[Descriptor, list[Reference]]]:
    """The images of manifest.json, each turned into an OCI manifest in the content store."""
    try:
        entries = json.loads(archive.read("manifest.json"))
    except ValueError as e:
        raise InvalidArchive(f"manifest.json is not valid JSON: {e}") from e
    if not isinstance(entries, list) or not entries:
        raise InvalidArchive("manifest.json must be a non-empty list of images")
    out = []
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) or not isinstance(entry.get("Layers"), list):
            raise InvalidArchive(f"manifest.json entry {n}: needs Config and Layers")
        config_bytes = archive.read(entry["Config"])
        config = ImageConfig.parse(config_bytes)
        if len(config.diff_ids) != len(entry["Layers"]):
            raise InvalidArchive(f"manifest.json entry {n}: {len(entry['Layers'])} layers for {len(config.diff_ids)} diff IDs in the config")
        config_info = archive.blob(entry["Config"])
        layers = []
        for path, diff_id in zip(entry["Layers"], config.diff_ids):
            if not isinstance(path, str):
                raise InvalidArchive(f"manifest.json entry {n}: layer paths must be strings")
            info = archive.blob(path)
            with archive.store.content.open(info.digest) as fh:
                kind = detect(fh.read(4))
            if kind is None and info.digest != diff_id:
                raise DigestMismatch(f"layer {path!r} does not match its diff ID: expected {diff_id}, got {info.digest}")
            layers.append(Descriptor(_LAYER_BY_COMPRESSION[kind], info.digest, info.size))
        manifest = Manifest(OCI_MANIFEST, Descriptor(OCI_CONFIG, config_info.digest, config_info.size), layers)
        desc = archive.store.put_document(archive.op, canonical_json(manifest.to_dict()), OCI_MANIFEST)
        out.append((desc, _docker_names(entry.get("RepoTags"))))
    return out


def _oci_name(desc: Descriptor, repository: Reference | None) -> list[Reference]:
    full = desc.annotations.get(ANNOTATION_CONTAINERD_NAME)
    if full:
        return [parse_image(full)]
    tag = desc.annotations.get(ANNOTATION_REF_NAME)
    if not tag:
        return []
    if repository is not None and TAG_RE.match(tag):
        return [repository.with_tag(tag)]
    if "/" in tag or ":" in tag or "@" in tag:
        try:
            return [parse_image(tag)]
        except InvalidReference:
            return []
    return []  # a bare tag and no repository to put it in: the image loads untagged


def _oci_images(archive: _Archive, repository: Reference | None) -> list[tuple[Descriptor, list[Reference]]]:
    try:
        layout = json.loads(archive.read("oci-layout"))
    except ValueError as e:
        raise InvalidArchive(f"oci-layout is not valid JSON: {e}") from e
    if not isinstance(layout, dict) or layout.get("imageLayoutVersion") != OCI_LAYOUT_VERSION:
        raise InvalidArchive(f"unsupported OCI layout version {layout!r}")
    data = archive.read("index.json")
    index = parse_index(data, OCI_INDEX if "mediaType" not in json.loads(data) else None)
    merged: dict[Digest, tuple[Descriptor, list[Reference]]] = {}
    for desc in index.manifests:
        if desc.media_type not in MANIFEST_TYPES and desc.media_type not in INDEX_TYPES:
            continue  # artifacts and other documents in the layout are not images
        archive.blob_by_digest(desc.digest)
        names = _oci_name(desc, repository)
        if desc.digest in merged:
            merged[desc.digest][1].extend(n for n in names if n not in merged[desc.digest][1])
        else:
            merged[desc.digest] = (desc, names)
    if not merged:
        raise InvalidArchive("index.json lists no image")
    return list(merged.values())


def _bring_in_documents(archive: _Archive, target: Descriptor, platform: Platform) -> None:
    """Make sure the manifests, config and layers of `target` are blobs in the content store."""
    archive.blob_by_digest(target.digest)
    data = archive.store.content.read(target.digest)
    media_type = document_media_type(data, target.media_type)
    if media_type in INDEX_TYPES:
        index = parse_index(data, media_type)
        _bring_in_documents(archive, index.select(platform), platform)
        return
    manifest = archive.store.read_manifest(Descriptor(media_type, target.digest, target.size))
    for desc in [manifest.config, *manifest.layers]:
        info = archive.blob_by_digest(desc.digest)
        if info.size != desc.size:
            raise DigestMismatch(f"blob {desc.digest}: size {info.size} in the archive, {desc.size} in the manifest")


def load(store: ImageStore, source: BinaryIO | str, *, repository: str | None = None,
         platform: Platform | None = None) -> list[LoadedImage]:
    """`docker load`: read a docker-archive or an OCI layout (a tar stream, or a layout directory)."""
    repo = parse_repository(repository) if repository else None
    wanted = platform or store.platform
    with store.operation() as op:
        if isinstance(source, str):
            if not os.path.isdir(source):
                raise NotFound(f"no OCI layout directory at {source}")
            archive = _read_layout_dir(store, op, source)
        else:
            archive = _read_archive(store, op, source)
        if archive.has("manifest.json"):
            targets = _docker_images(archive)
        elif archive.has("index.json"):
            targets = _oci_images(archive, repo)
        else:
            raise InvalidArchive("not an image archive: no manifest.json (docker-archive) nor index.json (OCI layout)")
        prepared: list[tuple[PreparedImage, list[Reference]]] = []
        for desc, names in targets:
            _bring_in_documents(archive, desc, wanted)
            prepared.append((store.prepare(op, desc, platform=wanted), names))
        images = store.record(prepared)
    return [LoadedImage(image, [n.familiar() for n in names]) for image, (_, names) in zip(images, prepared)]


# --- writing an archive ---------------------------------------------------------------------

@dataclass
class _SaveItem:
    image: Image
    names: list[Reference]
    manifest_desc: Descriptor
    manifest: Manifest
    config: ImageConfig


def _select(store: ImageStore, refs: list[str]) -> list[_SaveItem]:
    """The images to save and, for each, the names it is saved under (Docker's rules)."""
    items: dict[str, _SaveItem] = {}
    for text in refs:
        try:
            ref: Reference | None = parse_reference(text)
        except InvalidReference:
            ref = None
        if ref is not None and ref.is_name_only:
            # `docker save busybox` saves every tag of the repository
            tagged = [i for i in store.list() if any(parse_reference(t).name == ref.name for t in i.repo_tags)]
            for img in tagged:
                item = _item(store, items, img)
                item.names.extend(n for n in (parse_reference(t) for t in img.repo_tags)
                                  if n.name == ref.name and n not in item.names)
            if tagged:
                continue
        image = store.get(text)
        item = _item(store, items, image)
        if ref is not None and not ImageStore._is_id_reference(text, image):
            named = ref.tagged_or_latest()
            if named.tag is not None and named.digest is None and named not in item.names:
                item.names.append(named)
    if not items:
        raise InvalidArgument("nothing to save: no image given")
    return list(items.values())


def _item(store: ImageStore, items: dict[str, _SaveItem], image: Image) -> _SaveItem:
    key = str(image.id)
    if key not in items:
        desc, manifest = store.resolve_target(image.target)
        config = ImageConfig.parse(store.content.read(image.id))
        items[key] = _SaveItem(image, [], desc, manifest, config)
    return items[key]


class _TarWriter:
    def __init__(self, out: BinaryIO, mtime: int = 0) -> None:
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_COPY)
        self.mtime = mtime
        self.dirs: set[str] = set()

    def _dirs_for(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                info = tarfile.TarInfo(d)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, self.mtime
                self.tar.addfile(info)

    def add_bytes(self, name: str, data: bytes) -> None:
        self._dirs_for(name)
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, self.mtime
        self.tar.addfile(info, io.BytesIO(data))

    def add_stream(self, name: str, size: int, stream: BinaryIO) -> None:
        self._dirs_for(name)
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, self.mtime
        self.tar.addfile(info, stream)

    def close(self) -> None:
        self.tar.close()


@contextmanager
def _uncompressed(store: ImageStore, digest: Digest) -> Iterator[BinaryIO]:
    with store.content.open(digest) as fh:
        stream, _ = decompressed(fh)
        try:
            yield stream
        finally:
            if stream is not fh:
                stream.close()


def _uncompressed_size(store: ImageStore, digest: Digest) -> int:
    total = 0
    with _uncompressed(store, digest) as stream:
        while chunk := stream.read(_COPY):
            total += len(chunk)
    return total


def save_docker_archive(store: ImageStore, refs: list[str], out: BinaryIO) -> None:
    """`docker save`: the classic docker-archive, with uncompressed layers, that any Docker loads."""
    items = _select(store, refs)
    writer = _TarWriter(out)
    written: set[str] = set()
    manifest_json = []
    repositories: dict[str, dict[str, str]] = {}
    for item in items:
        layer_paths = []
        parent_id = ""
        for layer, diff_id in zip(item.manifest.layers, item.config.diff_ids):
            layer_id = diff_id.encoded
            path = f"{layer_id}/layer.tar"
            if layer_id not in written:
                if layer.media_type == OCI_LAYER or _is_plain(store, layer.digest):
                    with store.content.open(layer.digest) as fh:
                        writer.add_stream(path, layer.size, fh)
                else:
                    size = _uncompressed_size(store, layer.digest)  # a tar header needs the size first
                    with _uncompressed(store, layer.digest) as stream:
                        writer.add_stream(path, size, stream)
                writer.add_bytes(f"{layer_id}/VERSION", b"1.0")
                v1: dict[str, Any] = {"id": layer_id}
                if parent_id:
                    v1["parent"] = parent_id
                writer.add_bytes(f"{layer_id}/json", canonical_json(v1))
                written.add(layer_id)
            layer_paths.append(path)
            parent_id = layer_id
        config_name = f"{item.image.id.encoded}.json"
        if config_name not in written:
            writer.add_bytes(config_name, store.content.read(item.image.id))
            written.add(config_name)
        tags = [n.familiar() for n in item.names]
        manifest_json.append({"Config": config_name, "RepoTags": tags or None, "Layers": layer_paths})
        for n in item.names:
            if parent_id and n.tag:
                repositories.setdefault(n.familiar_name, {})[n.tag] = parent_id
    writer.add_bytes("manifest.json", canonical_json(manifest_json))
    if repositories:
        writer.add_bytes("repositories", canonical_json(repositories))
    writer.close()


def _is_plain(store: ImageStore, digest: Digest) -> bool:
    with store.content.open(digest) as fh:
        return detect(fh.read(4)) is None


def _layout_entries(store: ImageStore, items: list[_SaveItem]) -> tuple[list[Digest], bytes]:
    """The blobs of an OCI layout for these images, and its index.json."""
    blobs: list[Digest] = []
    manifests = []
    for item in items:
        top = item.image.target
        if top.media_type in INDEX_TYPES and not _index_complete(store, top):
            top = item.manifest_desc  # save what we have: the manifest of our platform
        for d in _reachable(store, top):
            if d not in blobs:
                blobs.append(d)
        base = Descriptor(top.media_type, top.digest, store.content.info(top.digest).size)
        if not item.names:
            manifests.append(base.to_dict())
        for name in item.names:
            annotations = {ANNOTATION_CONTAINERD_NAME: str(name)}
            if name.tag:
                annotations[ANNOTATION_REF_NAME] = name.tag
            manifests.append(Descriptor(base.media_type, base.digest, base.size, annotations).to_dict())
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    return blobs, canonical_json(index)


def _index_complete(store: ImageStore, desc: Descriptor) -> bool:
    try:
        _reachable(store, desc)
    except NotFound:
        return False
    return True


def _reachable(store: ImageStore, desc: Descriptor) -> list[Digest]:
    if not store.content.exists(desc.digest):
        raise NotFound(f"blob {desc.digest} is not in the store")
    out = [desc.digest]
    if desc.media_type in INDEX_TYPES:
        for child in store.read_index(desc).manifests:
            if child.media_type in MANIFEST_TYPES or child.media_type in INDEX_TYPES:
                out += [d for d in _reachable(store, child) if d not in out]
    elif desc.media_type in MANIFEST_TYPES:
        manifest = store.read_manifest(desc)
        for child in [manifest.config, *manifest.layers]:
            if not store.content.exists(child.digest):
                raise NotFound(f"blob {child.digest} is not in the store")
            if child.digest not in out:
                out.append(child.digest)
    return out


def save_oci_archive(store: ImageStore, refs: list[str], out: BinaryIO) -> None:
    """An OCI image layout in a tar stream (skopeo's oci-archive:)."""
    items = _select(store, refs)
    blobs, index = _layout_entries(store, items)
    writer = _TarWriter(out)
    writer.add_bytes("oci-layout", canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    for digest in blobs:
        with store.content.open(digest) as fh:
            writer.add_stream(f"blobs/{digest.algorithm}/{digest.encoded}", store.content.info(digest).size, fh)
    writer.add_bytes("index.json", index)
    writer.close()


def save_oci_dir(store: ImageStore, refs: list[str], directory: str) -> None:
    """An OCI image layout directory (skopeo's and umoci's oci:DIR). An existing layout is added to."""
    items = _select(store, refs)
    blobs, index = _layout_entries(store, items)
    os.makedirs(directory, exist_ok=True)
    existing: list[dict[str, Any]] = []
    index_path = os.path.join(directory, "index.json")
    if os.path.exists(index_path):
        with open(index_path, "rb") as fh:
            existing = parse_index(fh.read(), OCI_INDEX).to_dict()["manifests"]
    for digest in blobs:
        target = os.path.join(directory, "blobs", digest.algorithm, digest.encoded)
        if os.path.exists(target):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.tmp{os.getpid()}"
        with store.content.open(digest) as src, open(tmp, "wb") as dst:
            while chunk := src.read(_COPY):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        os.rename(tmp, target)
    write_atomic(os.path.join(directory, "oci-layout"), canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    new = json.loads(index)["manifests"]
    names = {m.get("annotations", {}).get(ANNOTATION_REF_NAME) for m in new} - {None}
    kept = [m for m in existing if m.get("annotations", {}).get(ANNOTATION_REF_NAME) not in names]
    write_atomic(index_path, canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": kept + new}))


def save(store: ImageStore, refs: list[str], out: BinaryIO | str, format: str = DOCKER_ARCHIVE) -> None:
    if format == DOCKER_ARCHIVE:
        save_docker_archive(store, refs, out)  # type: ignore[arg-type]
    elif format == OCI_ARCHIVE:
        save_oci_archive(store, refs, out)  # type: ignore[arg-type]
    elif format == OCI_DIR:
        if not isinstance(out, str):
            raise InvalidArgument("the oci-dir format needs a directory path")
        save_oci_dir(store, refs, out)
    else:
        raise InvalidArgument(f"unknown archive format {format!r}: one of {', '.join(FORMATS)}")


__all__ = ["DOCKER_ARCHIVE", "FORMATS", "OCI_ARCHIVE", "OCI_DIR", "InvalidArchive", "LoadedImage", "load", "save"]
