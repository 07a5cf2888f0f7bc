"""The image store: images over the content store and the overlay snapshotter.

    <root>/content/              blobs by digest (dockyard.content)
    <root>/overlay/              layer and container snapshots (dockyard.snapshot)
    <root>/image/metadata.db     images, names, which blobs each image holds (sqlite)
    <root>/image/gc.lock         shared by writers, exclusive for garbage collection

An image is recorded only after all its blobs are verified in the content store and all its
layers are committed snapshots, in one transaction with its names: a crash at any moment
leaves either no image or a whole one. What a failed or killed operation wrote and nothing
references is garbage: `gc()` removes it (and `recover()` after a crash).

Images are identified by their config digest (Docker's image ID). Reference counting is the
image_blobs table (how many images hold each blob) and the snapshot parent links.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from dockyard.content import BlobInfo, ContentStore
from dockyard.errors import AlreadyExists, InvalidArgument, NotFound, WrongState
from dockyard.image.locks import StoreLock
from dockyard.image.model import DeleteReport, GCReport, HistoryEntry, Image, ImageDetails, ImageUser, PruneReport
from dockyard.snapshot import ACTIVE, COMMITTED, VIEW, ApplyLimits, Mount, OverlaySnapshotter, apply_layer
from dockyard.snapshot.overlay import OWNER_LABEL
from dockyard.types.digest import Digest, chain_ids
from dockyard.types.oci import (
    CONFIG_TYPES,
    INDEX_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    ImageConfig,
    Index,
    InvalidDocument,
    Manifest,
    Platform,
    UnknownMediaType,
    host_platform,
    layer_compression,
    parse_index,
    parse_manifest,
)
from dockyard.types.reference import SHORT_IDENTIFIER_RE, InvalidReference, Reference, parse_image, parse_reference
from dockyard.utils.liveness import owner_alive, owner_token
from dockyard.utils.sqlite import Database

DEFAULT_ROOT = "/var/lib/dockyard"
IMAGE_LABEL = "dockyard.image"          # on a container's snapshot: the image it was created from
CONTAINER_LABEL = "dockyard.container"  # on a container's snapshot: the container's ID
RUNNING_LABEL = "dockyard.running"      # on a container's snapshot: "true" while it runs

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    target_media_type TEXT NOT NULL,
    target_digest TEXT NOT NULL,
    target_size INTEGER NOT NULL,
    manifest_digest TEXT NOT NULL,
    chain_id TEXT,
    size INTEGER NOT NULL,
    parent TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS refs (
    name TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('tag', 'digest')),
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS refs_image ON refs(image_id);
CREATE TABLE IF NOT EXISTS image_blobs (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    PRIMARY KEY (image_id, digest)
);
CREATE INDEX IF NOT EXISTS image_blobs_digest ON image_blobs(digest)
"""


def syncfs(path: str) -> None:
    """Flush the filesystem holding `path` (the unpacked files of a layer) before it is committed."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        ctypes.CDLL(None, use_errno=True).syncfs(fd)
    finally:
        os.close(fd)


@dataclass
class PreparedImage:
    """An image whose blobs are verified and whose layers are unpacked, not yet recorded."""

    target: Descriptor
    manifest_desc: Descriptor
    manifest: Manifest
    config: ImageConfig
    chain_id: Digest | None
    size: int
    parent: str | None
    blobs: list[Digest]


@dataclass
class Operation:
    """One write operation: what it added, so that a failure can take it back."""

    blobs: list[Digest] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)

    def note(self, info: BlobInfo) -> BlobInfo:
        if info.created:
            self.blobs.append(info.digest)
        return info


class ImageStore:
    def __init__(self, root: str = DEFAULT_ROOT, *, durable: bool = True, platform: Platform | None = None,
                 limits: ApplyLimits | None = None, recover: bool = True, unpack_workers: int = 4) -> None:
        self.root = root
        self.durable = durable
        self.platform = platform or host_platform()
        self.limits = limits or ApplyLimits()
        self.unpack_workers = max(1, unpack_workers)
        os.makedirs(os.path.join(root, "image"), mode=0o700, exist_ok=True)
        self.content = ContentStore(os.path.join(root, "content"), sync=durable)
        self.snapshots = OverlaySnapshotter(os.path.join(root, "overlay"))
        self.db = Database(os.path.join(root, "image", "metadata.db"), _SCHEMA)
        self.lock = StoreLock(os.path.join(root, "image", "gc.lock"))
        self.tmp_dir = os.path.join(root, "image", "tmp")
        os.makedirs(self.tmp_dir, mode=0o700, exist_ok=True)
        self.users: Callable[[str], list[ImageUser]] = self._users_from_snapshots
        if recover:
            self.recover(blocking=False)

    def close(self) -> None:
        self.db.close()
        self.snapshots.close()

    # --- write operations ---------------------------------------------------------------

    @contextmanager
    def operation(self) -> Iterator[Operation]:
        """Hold off garbage collection while blobs and snapshots are added; undo them on failure."""
        op = Operation()
        failed = True
        try:
            with self.lock.shared():
                yield op
                failed = False
        finally:
            if failed:
                self._undo(op)

    def _undo(self, op: Operation) -> None:
        with self.lock.exclusive(blocking=False) as taken:
            if not taken:
                return  # another writer is busy: gc() will find the leftovers
            for key in reversed(op.snapshots):
                if self.snapshots.exists(key) and not self._snapshot_referenced(key):
                    try:
                        self.snapshots.remove(key)
                    except (WrongState, NotFound):
                        pass
            for digest in op.blobs:
                if not self.db.query_one("SELECT 1 FROM image_blobs WHERE digest = ?", (str(digest),)):
                    self.content.delete(digest)

    def _snapshot_referenced(self, key: str) -> bool:
        return key in self._live_snapshots()

    def put_document(self, op: Operation, data: bytes, media_type: str) -> Descriptor:
        info = op.note(self.content.put(data))
        return Descriptor(media_type, info.digest, info.size)

    # --- unpacking ----------------------------------------------------------------------

    def unpack(self, op: Operation, manifest: Manifest, config: ImageConfig,
               blob_ready: Callable[[Digest], None] | None = None) -> Digest | None:
        """Make sure every layer of the image is a committed snapshot; returns the top ChainID.

        Missing layers are unpacked in parallel (each into its own tree; a layer that must look
        at the layers beneath it waits for them), then committed in order, bottom up.
        """
        if len(manifest.layers) != len(config.diff_ids):
            raise InvalidDocument(f"image has {len(manifest.layers)} layers but its config lists {len(config.diff_ids)} diff IDs")
        chain = [str(c) for c in chain_ids(config.diff_ids)]
        todo = [i for i, c in enumerate(chain) if not self.snapshots.exists(c)]
        for i in todo:
            layer_compression(manifest.layers[i].media_type)  # refuse unknown layer types before reading them
        token = owner_token()
        keys: dict[int, str] = {}
        trees = {i: self.snapshots.fs_dir(self.snapshots.stat(c)) for i, c in enumerate(chain) if i not in todo}
        finished = {i: threading.Event() for i in todo}
        failed = threading.Event()

        def lowers(i: int) -> list[str]:
            for j in range(i - 1, -1, -1):
                if j in finished:
                    while not finished[j].wait(0.1):
                        if failed.is_set():
                            raise InvalidArgument(f"layer {i} not unpacked: a layer beneath it failed")
                    if failed.is_set():
                        raise InvalidArgument(f"layer {i} not unpacked: a layer beneath it failed")
            return [trees[j] for j in range(i - 1, -1, -1)]

        def work(i: int) -> int:
            try:
                if blob_ready is not None:
                    blob_ready(manifest.layers[i].digest)  # still downloading: wait for it (raises if it failed)
                with self.content.open(manifest.layers[i].digest) as blob:
                    result = apply_layer(blob, trees[i], lambda: lowers(i), expected_diff_id=config.diff_ids[i], limits=self.limits)
                if self.durable:
                    syncfs(trees[i])
                return result.size
            except BaseException:
                failed.set()
                raise
            finally:
                finished[i].set()

        try:
            for i in todo:
                keys[i] = f"extract-{token}-{secrets.token_hex(4)} {chain[i]}"
                self.snapshots.prepare(keys[i], None, labels={OWNER_LABEL: token})
                trees[i] = self.snapshots.upper_dir(keys[i])
            if todo:
                with ThreadPoolExecutor(max_workers=min(self.unpack_workers, len(todo)), thread_name_prefix="unpack") as pool:
                    futures = {i: pool.submit(work, i) for i in todo}
                    try:
                        for i in todo:
                            size = futures[i].result()
                            labels = {"dockyard.diff_id": str(config.diff_ids[i]), "dockyard.blob": str(manifest.layers[i].digest)}
                            try:
                                self.snapshots.commit(chain[i], keys[i], labels=labels, size=size, parent=chain[i - 1] if i else None)
                                op.snapshots.append(chain[i])
                            except AlreadyExists:
                                self.snapshots.remove(keys[i])  # another unpack of the same layer won the race
                            del keys[i]
                    except BaseException:
                        failed.set()
                        raise
        finally:
            for key in keys.values():
                if self.snapshots.exists(key):
                    self.snapshots.remove(key)
        return Digest.parse(chain[-1]) if chain else None

    # --- recording images ---------------------------------------------------------------

    def read_manifest(self, desc: Descriptor) -> Manifest:
        return parse_manifest(self.content.read(desc.digest), desc.media_type)

    def resolve_target(self, target: Descriptor, platform: Platform | None = None) -> tuple[Descriptor, Manifest]:
        """The platform's manifest for a target (an index is walked down to a manifest)."""
        wanted = platform or self.platform
        desc = target
        for _ in range(4):
            if desc.media_type in INDEX_TYPES:
                index = parse_index(self.content.read(desc.digest), desc.media_type)
                desc = index.select(wanted)
                continue
            if desc.media_type in MANIFEST_TYPES:
                return desc, self.read_manifest(desc)
            raise UnknownMediaType(f"unknown manifest media type {desc.media_type!r}")
        raise InvalidDocument("indexes nested more than 4 deep")

    def read_index(self, desc: Descriptor) -> Index:
        return parse_index(self.content.read(desc.digest), desc.media_type)

    def prepare(self, op: Operation, target: Descriptor, *, parent: str | None = None,
                extra_blobs: list[Digest] | None = None, platform: Platform | None = None,
                blob_ready: Callable[[Digest], None] | None = None) -> PreparedImage:
        """Check an image whose documents are in the content store, and unpack its layers.

        With `blob_ready`, layer blobs may still be arriving (a pull): each is unpacked as soon
        as `blob_ready(digest)` returns, which blocks until it is in the store (or raises)."""
        manifest_desc, manifest = self.resolve_target(target, platform)
        if not manifest.is_image:
            if manifest.config.media_type not in CONFIG_TYPES:
                raise UnknownMediaType(f"manifest {manifest_desc.digest} is not a container image: config media type "
                                       f"{manifest.config.media_type!r}")
            for layer in manifest.layers:
                layer_compression(layer.media_type)  # names the unknown layer type
        if not self.content.exists(manifest.config.digest):
            raise NotFound(f"config blob {manifest.config.digest} of manifest {manifest_desc.digest} is missing")
        config = ImageConfig.parse(self.content.read(manifest.config.digest))
        for layer in manifest.layers:
            if blob_ready is None and not self.content.exists(layer.digest):
                raise NotFound(f"layer blob {layer.digest} of image {manifest.config.digest} is missing")
        chain_id = self.unpack(op, manifest, config, blob_ready)
        if blob_ready is not None:
            for layer in manifest.layers:  # layers whose snapshots existed already were not waited for
                blob_ready(layer.digest)
        size = sum(self.snapshots.stat(str(c)).size for c in chain_ids(config.diff_ids))
        blobs = {target.digest, manifest_desc.digest, manifest.config.digest, *(layer.digest for layer in manifest.layers),
                 *(extra_blobs or [])}
        return PreparedImage(target, manifest_desc, manifest, config, chain_id, size, parent, sorted(blobs))

    def record(self, images: list[tuple[PreparedImage, list[Reference]]], *, repo_digest: bool = False) -> list[Image]:
        """Record prepared images and their names in one transaction: all of them or none."""
        now = time.time()
        with self.db.transaction() as tx:
            for prepared, names in images:
                image_id = str(prepared.manifest.config.digest)
                # an upsert, not INSERT OR REPLACE: a replaced row would take its names with it (ON DELETE CASCADE)
                tx.execute("INSERT INTO images (id, target_media_type, target_digest, target_size, manifest_digest,"
                           " chain_id, size, parent, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                           " ON CONFLICT(id) DO UPDATE SET target_media_type = excluded.target_media_type,"
                           " target_digest = excluded.target_digest, target_size = excluded.target_size,"
                           " manifest_digest = excluded.manifest_digest, chain_id = excluded.chain_id, size = excluded.size,"
                           " parent = COALESCE(excluded.parent, images.parent)",
                           (image_id, prepared.target.media_type, str(prepared.target.digest), prepared.target.size,
                            str(prepared.manifest_desc.digest), str(prepared.chain_id) if prepared.chain_id else None,
                            prepared.size, prepared.parent, now))
                tx.execute("DELETE FROM image_blobs WHERE image_id = ?", (image_id,))
                for digest in prepared.blobs:
                    tx.execute("INSERT INTO image_blobs (image_id, digest) VALUES (?, ?)", (image_id, str(digest)))
                for ref in names:
                    self._set_ref(tx, ref, image_id, now)
                if names and repo_digest:
                    self._set_ref(tx, Reference(names[0].domain, names[0].path, None, prepared.target.digest), image_id, now)
        return [self.get(str(p.manifest.config.digest)) for p, _ in images]

    def create(self, op: Operation, target: Descriptor, names: list[Reference] | None = None, *,
               parent: str | None = None, extra_blobs: list[Digest] | None = None,
               platform: Platform | None = None, repo_digest: bool = False,
               blob_ready: Callable[[Digest], None] | None = None) -> Image:
        """prepare() and record() one image."""
        prepared = self.prepare(op, target, parent=parent, extra_blobs=extra_blobs, platform=platform,
                                blob_ready=blob_ready)
        return self.record([(prepared, list(names or []))], repo_digest=repo_digest)[0]

    def _set_ref(self, tx: Any, ref: Reference, image_id: str, now: float) -> None:
        kind = "digest" if ref.digest is not None and ref.tag is None else "tag"
        if ref.tag is not None and ref.digest is not None:
            ref = replace(ref, digest=None)
        tx.execute("INSERT OR REPLACE INTO refs (name, image_id, kind, created) VALUES (?, ?, ?, ?)", (str(ref), image_id, kind, now))

    # --- queries ------------------------------------------------------------------------

    def _row_to_image(self, row: Any, refs: list[Any]) -> Image:
        tags = tuple(sorted(r["name"] for r in refs if r["kind"] == "tag"))
        digests = tuple(sorted(r["name"] for r in refs if r["kind"] == "digest"))
        return Image(Digest.parse(row["id"]), Descriptor(row["target_media_type"], Digest.parse(row["target_digest"]), row["target_size"]),
                     Digest.parse(row["manifest_digest"]), Digest.parse(row["chain_id"]) if row["chain_id"] else None,
                     row["size"], row["parent"], row["created_at"], tags, digests)

    def _load(self, image_id: str) -> Image | None:
        row = self.db.query_one("SELECT * FROM images WHERE id = ?", (image_id,))
        if row is None:
            return None
        return self._row_to_image(row, self.db.query("SELECT name, kind FROM refs WHERE image_id = ?", (image_id,)))

    def list(self, *, dangling: bool | None = None) -> list[Image]:
        rows = self.db.query("SELECT * FROM images ORDER BY created_at DESC")
        refs: dict[str, list[Any]] = {}
        for r in self.db.query("SELECT name, kind, image_id FROM refs"):
            refs.setdefault(r["image_id"], []).append(r)
        images = [self._row_to_image(row, refs.get(row["id"], [])) for row in rows]
        if dangling is not None:
            images = [i for i in images if i.dangling == dangling]
        return images

    def parent_ids(self) -> set[str]:
        """The images that are some other image's parent (a build's steps, a commit's base)."""
        return {r["parent"] for r in self.db.query("SELECT DISTINCT parent FROM images WHERE parent IS NOT NULL")}

    def lookup(self, text: str) -> Image | None:
        """Docker's GetImage: an ID (full, or sha256:...), a name (busybox -> :latest), or an ID prefix."""
        text = text.strip()
        if text.startswith("sha256:"):
            try:
                return self._load(str(Digest.parse(text)))
            except InvalidArgument:
                return self._by_prefix(text[len("sha256:"):])
        if len(text) == 64 and SHORT_IDENTIFIER_RE.match(text):
            return self._load(f"sha256:{text}")
        try:
            ref = parse_image(text)
        except InvalidReference:
            if SHORT_IDENTIFIER_RE.match(text):
                return self._by_prefix(text)
            raise
        row = self.db.query_one("SELECT image_id FROM refs WHERE name = ?", (str(ref),))
        if row is not None:
            return self._load(row["image_id"])
        if ref.digest is not None:
            # name@digest where the digest is the image's manifest or index, under any tag of that repository
            for r in self.db.query("SELECT id FROM images WHERE target_digest = ? OR manifest_digest = ?", (str(ref.digest), str(ref.digest))):
                image = self._load(r["id"])
                if image and any(parse_reference(n).name == ref.name for n in image.repo_tags + image.repo_digests):
                    return image
        if SHORT_IDENTIFIER_RE.match(text):
            return self._by_prefix(text)
        return None

    def _by_prefix(self, prefix: str) -> Image | None:
        if not prefix:
            return None
        rows = self.db.query("SELECT id FROM images WHERE id >= ? AND id < ?", (f"sha256:{prefix}", f"sha256:{prefix}g"))
        if len(rows) > 1:
            raise InvalidArgument(f"ambiguous image ID prefix {prefix!r}: {len(rows)} images match")
        return self._load(rows[0]["id"]) if rows else None

    def get(self, text: str) -> Image:
        image = self.lookup(text)
        if image is None:
            raise NotFound(f"No such image: {text}")
        return image

    def details(self, text: str) -> ImageDetails:
        image = self.get(text)
        manifest = self.read_manifest(Descriptor(image.target.media_type, image.manifest_digest, 0)) \
            if image.target.media_type in MANIFEST_TYPES else self.resolve_target(image.target)[1]
        config = ImageConfig.parse(self.content.read(image.id))
        sizes = [self.snapshots.stat(str(c)).size for c in chain_ids(config.diff_ids)]
        return ImageDetails(image, config, manifest, sizes)

    def inspect(self, text: str) -> ImageDetails:
        return self.details(text)

    def history(self, text: str) -> list[HistoryEntry]:
        d = self.details(text)
        entries = []
        layer = 0
        history = d.config.history or [{"created": d.config.created, "created_by": "", "comment": ""} for _ in d.config.diff_ids]
        for i, h in enumerate(history):
            empty = bool(h.get("empty_layer"))
            size = 0
            if not empty and layer < len(d.layer_sizes):
                size = d.layer_sizes[layer]
                layer += 1
            top = i == len(history) - 1
            entries.append(HistoryEntry(str(d.image.id) if top else "<missing>", h.get("created"), h.get("created_by", ""),
                                        size, h.get("comment", ""), d.image.repo_tags if top else (), empty))
        entries.reverse()
        return entries

    # --- names --------------------------------------------------------------------------

    def tag(self, source: str, target: str) -> Reference:
        image = self.get(source)
        ref = parse_reference(target)
        if ref.digest is not None:
            raise InvalidReference(f"refusing to create a tag with a digest reference: {target}")
        ref = ref.tagged_or_latest()
        with self.db.transaction() as tx:
            if tx.query_one("SELECT 1 FROM images WHERE id = ?", (str(image.id),)) is None:
                raise NotFound(f"No such image: {source}")
            self._set_ref(tx, ref, str(image.id), time.time())
        return ref

    # --- removal ------------------------------------------------------------------------

    def _users_from_snapshots(self, image_id: str) -> list[ImageUser]:
        out = []
        for info in self.snapshots.walk():
            if info.kind != COMMITTED and info.labels.get(IMAGE_LABEL) == image_id:
                out.append(ImageUser(info.labels.get(CONTAINER_LABEL, info.key), info.labels.get(RUNNING_LABEL) == "true"))
        return out

    def _children(self, image_id: str) -> list[str]:
        return [r["id"] for r in self.db.query("SELECT id FROM images WHERE parent = ?", (image_id,))]

    def _single_reference(self, image: Image) -> bool:
        """One name, or one tag plus digest references of that same repository (Docker's isSingleReference)."""
        names = self._all_names(image)
        if len(names) <= 1:
            return len(names) == 1
        tags = [parse_reference(n) for n in image.repo_tags]
        repos = {parse_reference(n).name for n in image.repo_digests}
        return len(tags) == 1 and repos <= {tags[0].name}

    def _untag(self, tx: Any, ref: Reference, image: Image, report: DeleteReport) -> list[str]:
        """Remove one name; when it was the repository's last tag on the image, its digest names go too."""
        tx.execute("DELETE FROM refs WHERE name = ?", (str(ref),))
        report.untagged.append(ref.familiar())
        remaining = [n for n in self._all_names(image) if n != str(ref)]
        if ref.tag is not None and not any(parse_reference(n).name == ref.name for n in remaining if n in image.repo_tags):
            for n in [n for n in remaining if n in image.repo_digests and parse_reference(n).name == ref.name]:
                tx.execute("DELETE FROM refs WHERE name = ?", (n,))
                report.untagged.append(parse_reference(n).familiar())
                remaining.remove(n)
        return remaining

    def remove(self, text: str, *, force: bool = False, prune_children: bool = True) -> DeleteReport:
        """`docker rmi`: untag, and delete the image when no name is left, with Docker's conflicts."""
        image = self.get(text)
        image_id = str(image.id)
        short = image.id.short
        report = DeleteReport()
        users = self.users(image_id)
        ref = None if self._is_id_reference(text, image) else parse_image(text)
        if ref is not None and str(ref) in self._all_names(image):
            if not force and self._single_reference(image) and users:
                raise WrongState(f'conflict: unable to remove repository reference "{text}" (must force) - container '
                                 f"{users[0].container_id[:12]} is using its referenced image {short}")
            with self.db.transaction() as tx:
                remaining = self._untag(tx, ref, image, report)
            if remaining:
                return report
        elif not force and len({parse_reference(n).name for n in image.repo_tags}) > 1:
            raise WrongState(f"conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories")
        running = [u for u in users if u.running]
        if running:
            raise WrongState(f"conflict: unable to delete {short} (cannot be forced) - image is being used by running container {running[0].container_id[:12]}")
        if self._children(image_id):
            raise WrongState(f"conflict: unable to delete {short} (cannot be forced) - image has dependent child images")
        if users and not force:
            raise WrongState(f"conflict: unable to delete {short} (must be forced) - image is being used by stopped container {users[0].container_id[:12]}")
        with self.db.transaction() as tx:
            for r in tx.query("SELECT name FROM refs WHERE image_id = ?", (image_id,)):
                report.untagged.append(parse_reference(r["name"]).familiar())
            tx.execute("DELETE FROM refs WHERE image_id = ?", (image_id,))
            if not users:  # forced with a stopped container: the image stays, untagged, for the container
                tx.execute("DELETE FROM images WHERE id = ?", (image_id,))
                report.deleted.append(image_id)
        if users:
            return report
        parent = image.parent
        while prune_children and parent:
            up = self._load(parent)
            if up is None or not up.dangling or self._children(parent) or self.users(parent):
                break
            with self.db.transaction() as tx:
                tx.execute("DELETE FROM images WHERE id = ?", (parent,))
            report.deleted.append(parent)
            parent = up.parent
        self.gc(blocking=False)
        return report

    @staticmethod
    def _all_names(image: Image) -> list[str]:
        return list(image.repo_tags) + list(image.repo_digests)

    @staticmethod
    def _is_id_reference(text: str, image: Image) -> bool:
        """Whether `text` named the image by its ID (or a prefix of it) rather than by a name."""
        t = text.strip()
        if t.startswith("sha256:"):
            return True
        if not SHORT_IDENTIFIER_RE.match(t) or not image.id.encoded.startswith(t):
            return False
        try:
            return str(parse_image(t)) not in ImageStore._all_names(image)
        except InvalidReference:
            return True

    def prune(self, *, all_images: bool = False, until: float | None = None,
              labels: Callable[[dict[str, str]], bool] | None = None) -> PruneReport:
        """`docker image prune`: dangling images (all unused ones with `all_images`) that no container uses."""
        report = PruneReport()
        before = self._usage()
        for image in self.list():
            if not all_images and not image.dangling:
                continue
            if until is not None and image.created_at >= until:
                continue
            if labels is not None:
                cfg = ImageConfig.parse(self.content.read(image.id)).container_config
                if not labels(cfg.get("Labels") or {}):
                    continue
            if self.users(str(image.id)) or self._children(str(image.id)):
                continue
            with self.db.transaction() as tx:
                for r in tx.query("SELECT name FROM refs WHERE image_id = ?", (str(image.id),)):
                    report.images.untagged.append(parse_reference(r["name"]).familiar())
                tx.execute("DELETE FROM images WHERE id = ?", (str(image.id),))
            report.images.deleted.append(str(image.id))
        self.gc(blocking=True)
        report.space_reclaimed = max(0, before - self._usage())
        return report

    def _usage(self) -> int:
        return self.content.usage() + sum(i.size for i in self.snapshots.walk(COMMITTED))

    # --- garbage collection -------------------------------------------------------------

    def _live_snapshots(self) -> set[str]:
        """Every snapshot an image or a container needs (with all their ancestors)."""
        parents = {i.key: i.parent for i in self.snapshots.walk()}
        roots = [r["chain_id"] for r in self.db.query("SELECT chain_id FROM images WHERE chain_id IS NOT NULL")]
        roots += [key for key, _ in parents.items() if self.snapshots.stat(key).kind in (ACTIVE, VIEW)]
        live: set[str] = set()
        for key in roots:
            cur: str | None = key
            while cur is not None and cur not in live:
                live.add(cur)
                cur = parents.get(cur)
        return live

    def gc(self, *, blocking: bool = True) -> GCReport:
        """Remove blobs no image holds and layer snapshots nothing is built on or uses."""
        report = GCReport()
        with self.lock.exclusive(blocking=blocking) as taken:
            if not taken:
                return report
            referenced = {r["digest"] for r in self.db.query("SELECT DISTINCT digest FROM image_blobs")}
            for blob in list(self.content.walk()):
                if str(blob.digest) not in referenced:
                    self.content.delete(blob.digest)
                    report.blobs += 1
                    report.bytes += blob.size
            live = self._live_snapshots()
            progress = True
            while progress:
                progress = False
                for info in self.snapshots.walk(COMMITTED):
                    if info.key in live or self.snapshots.children(info.key):
                        continue
                    report.bytes += info.size
                    self.snapshots.remove(info.key)
                    report.snapshots += 1
                    progress = True
        return report

    def recover(self, *, blocking: bool = True) -> None:
        """After a crash: drop abandoned ingests and extractions, then collect garbage."""
        with self.lock.exclusive(blocking=blocking) as taken:
            if not taken:
                return
            self.content.recover()
            self.snapshots.recover()
            for name in os.listdir(self.tmp_dir):
                if not owner_alive(name.split("-", 1)[0]):
                    shutil.rmtree(os.path.join(self.tmp_dir, name), ignore_errors=True)
        self.gc(blocking=blocking)

    def check(self, *, verify_blobs: bool = False) -> list[str]:
        """Consistency problems of the store (an empty list when all is well): what fsck reports."""
        problems = []
        for image in self.list():
            for r in self.db.query("SELECT digest FROM image_blobs WHERE image_id = ?", (str(image.id),)):
                digest = Digest.parse(r["digest"])
                if not self.content.exists(digest):
                    problems.append(f"image {image.id}: blob {digest} is missing")
                elif verify_blobs:
                    try:
                        self.content.verify(digest)
                    except InvalidArgument as e:
                        problems.append(f"image {image.id}: {e}")
            try:
                config = ImageConfig.parse(self.content.read(image.id))
            except (NotFound, InvalidArgument) as e:
                problems.append(f"image {image.id}: config: {e}")
                continue
            for chain_id in chain_ids(config.diff_ids):
                if not self.snapshots.exists(str(chain_id)) or self.snapshots.stat(str(chain_id)).kind != COMMITTED:
                    problems.append(f"image {image.id}: layer snapshot {chain_id} is missing")
        for info in self.snapshots.walk():
            if not os.path.isdir(self.snapshots.fs_dir(info)):
                problems.append(f"snapshot {info.key}: its directory is missing")
        return problems

    def temp_dir(self) -> str:
        """A private scratch directory in the store's filesystem (removed by recover() if we die)."""
        path = os.path.join(self.tmp_dir, f"{owner_token()}-{secrets.token_hex(6)}")
        os.mkdir(path, 0o700)
        return path

    # --- containers (the snapshots of the container service) ----------------------------

    def prepare_container(self, container_id: str, image: str, *, labels: dict[str, str] | None = None) -> list[Mount]:
        """A writable snapshot for a container on top of an image; returns its mounts."""
        img = self.get(image)
        all_labels = {IMAGE_LABEL: str(img.id), CONTAINER_LABEL: container_id, **(labels or {})}
        with self.lock.shared():  # recovery (exclusive) must not take the new directory for a leftover
            return self.snapshots.prepare(container_id, str(img.chain_id) if img.chain_id else None, labels=all_labels)

    def prepare_scratch(self, key: str, image: str | None, *, labels: dict[str, str] | None = None) -> list[Mount]:
        """A writable snapshot on top of an image, or an empty one (the builder's COPY into `scratch`)."""
        if image is not None:
            return self.prepare_container(key, image, labels=labels)
        with self.lock.shared():
            return self.snapshots.prepare(key, None, labels={CONTAINER_LABEL: key, **(labels or {})})

    def remove_container(self, container_id: str) -> None:
        self.snapshots.remove(container_id)
