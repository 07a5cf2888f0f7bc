"""What the image store does for containers: commit, export and diff of a container filesystem.

The container service does not exist yet, so these take a container's snapshot key (or its
upper and lower dirs) as arguments; they never touch a running container's processes.
`docker commit` pauses the container first: that is the caller's job.
"""

from __future__ import annotations

import json
import os
from typing import Any, BinaryIO

from dockyard.errors import InvalidArgument
from dockyard.image.builder import new_config, now_rfc3339, store_image, store_layer
from dockyard.image.changes import apply_changes
from dockyard.image.model import Image
from dockyard.image.store import IMAGE_LABEL, ImageStore
from dockyard.snapshot import Change, Mount, mounted, write_diff
from dockyard.snapshot import changes as overlay_changes
from dockyard.types.oci import Descriptor
from dockyard.types.reference import parse_image


def container_dirs(store: ImageStore, key: str) -> tuple[str, list[str]]:
    """The upper dir and the lower dirs (top first) of a container's snapshot."""
    return store.snapshots.upper_dir(key), store.snapshots.lower_dirs(key)


def diff(store: ImageStore, key: str) -> list[Change]:
    """`docker diff`: what the container changed against its image."""
    upper, lowers = container_dirs(store, key)
    return overlay_changes(upper, lowers)


def commit(store: ImageStore, key: str | None = None, *, upper: str | None = None, base_image: str | None = None,
           reference: str | None = None, container_config: dict[str, Any] | None = None, changes: list[str] | None = None,
           author: str = "", message: str = "", created_by: str = "", container_id: str = "",
           compression: str | None = None) -> Image:
    """`docker commit`: a new image = the base image + one layer made of the container's changes.

    Give the container's snapshot `key` (its image comes from the snapshot's labels), or its
    `upper` dir and `base_image`.
    """
    if key is not None:
        upper = store.snapshots.upper_dir(key)
        base_image = base_image or store.snapshots.stat(key).labels.get(IMAGE_LABEL)
    if upper is None:
        raise InvalidArgument("commit needs a container snapshot key or an upper dir")
    return derive_image(store, base_image, upper, reference=reference, container_config=container_config,
                        changes=changes, author=author, comment=message, created_by=created_by,
                        container_id=container_id, compression=compression)


def derive_image(store: ImageStore, base_image: str | None, upper: str | None, *, reference: str | None = None,
                 container_config: dict[str, Any] | None = None, changes: list[str] | None = None,
                 author: str = "", comment: str = "", created_by: str = "", container_id: str = "",
                 compression: str | None = None, history_author: bool = True) -> Image:
    """A new image = `base_image` (None: nothing) + one layer of `upper`'s changes, or no new
    layer when `upper` is None (an "empty_layer" history entry, as a builder's ENV step makes).
    Its parent is the base image."""
    names = [parse_image(reference)] if reference else []
    base = store.details(base_image) if base_image else None
    created = now_rfc3339()
    with store.operation() as op:
        raw: dict[str, Any] = json.loads(json.dumps(base.config.raw)) if base else {}
        cfg = container_config if container_config is not None else dict(raw.get("config") or {})
        cfg = apply_changes(cfg, changes or [])
        history = list(raw.get("history") or [])
        entry: dict[str, Any] = {k: v for k, v in (("created", created), ("author", author if history_author else ""),
                                                   ("created_by", created_by), ("comment", comment)) if v}
        if upper is None:
            entry["empty_layer"] = True
        history.append(entry)
        extra = {k: v for k, v in raw.items() if k not in ("architecture", "variant", "os", "created", "author", "config",
                                                            "rootfs", "history", "container", "container_config", "comment")}
        if container_id:
            extra["container"] = container_id
        if comment:
            extra["comment"] = comment
        diff_ids = list(base.config.diff_ids) if base else []
        layers: list[Descriptor] = list(base.manifest.layers) if base else []
        if upper is not None:
            layer, diff_id = store_layer(store, op, lambda out: write_diff(upper, out), compression)
            diff_ids.append(diff_id)
            layers.append(layer)
        config = new_config(base.config.platform if base else store.platform, diff_ids, cfg, history, created, author, extra)
        manifest = store_image(store, op, config, layers)
        return store.create(op, manifest, names, parent=str(base.image.id) if base else None)


def export(out: BinaryIO, *, rootfs: str | None = None, mounts: list[Mount] | None = None,
           scratch: str | None = None) -> int:
    """`docker export`: a tar of a container's whole filesystem.

    Give a mounted `rootfs`, or the container's `mounts` (from the snapshotter) and a
    `scratch` directory to mount them on for the time of the export.
    """
    if rootfs is not None:
        return write_diff(rootfs, out)
    if mounts is None or scratch is None:
        raise InvalidArgument("export needs a mounted rootfs, or mounts and a scratch directory")
    os.makedirs(scratch, exist_ok=True)
    with mounted(mounts, scratch) as root:
        return write_diff(root, out)


def export_snapshot(store: ImageStore, key: str, out: BinaryIO) -> int:
    """Export a container's snapshot, mounted for the time of the export in the store's scratch space."""
    scratch = store.temp_dir()
    try:
        return export(out, mounts=store.snapshots.mounts(key), scratch=scratch)
    finally:
        os.rmdir(scratch)

