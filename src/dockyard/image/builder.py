"""Making new images in the store: a layer from a tar writer, a config, a manifest.

Used by the embedded images, `import`, and `commit`. Layers Dockyard makes itself are kept
uncompressed by default (as Docker's own layer store does, and as `docker save` writes them);
gzip or zstd can be asked for.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from typing import Any, BinaryIO

from dockyard.image.store import ImageStore, Operation
from dockyard.snapshot.compression import GZIP, ZSTD, compressor
from dockyard.types.digest import Digest, Digester
from dockyard.types.oci import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    ImageConfig,
    Manifest,
    Platform,
    canonical_json,
)

_LAYER_TYPES = {None: OCI_LAYER, GZIP: OCI_LAYER_GZIP, ZSTD: OCI_LAYER_ZSTD}


class _Sink:
    """What tarfile and the compressors write into: hashes the tar (diff ID), passes it on."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write

    def write(self, data: bytes) -> int:
        self._write(data)
        return len(data)

    def flush(self) -> None:
        pass


def store_layer(store: ImageStore, op: Operation, write_tar: Callable[[BinaryIO], None],
                compression: str | None = None) -> tuple[Descriptor, Digest]:
    """Run `write_tar(stream)` and keep what it writes as a layer blob; returns (descriptor, diff ID)."""
    diff = Digester()
    with store.content.writer() as blob:
        out = _Sink(blob.write)
        packed = compressor(out, compression)  # type: ignore[arg-type]

        def tee(data: bytes) -> None:
            diff.update(data)
            packed.write(data)

        write_tar(_Sink(tee))  # type: ignore[arg-type]
        packed.close()
        info = op.note(blob.commit())
    return Descriptor(_LAYER_TYPES[compression], info.digest, info.size), diff.digest()


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def rfc3339(timestamp: float) -> str:
    return _dt.datetime.fromtimestamp(timestamp, _dt.timezone.utc).isoformat().replace("+00:00", "Z")


def new_config(platform: Platform, diff_ids: list[Digest], container_config: dict[str, Any], history: list[dict[str, Any]],
               created: str, author: str = "", extra: dict[str, Any] | None = None) -> ImageConfig:
    raw: dict[str, Any] = {"architecture": platform.architecture}
    if platform.variant:
        raw["variant"] = platform.variant
    raw.update({"os": platform.os, "created": created})
    if author:
        raw["author"] = author
    raw.update(extra or {})
    raw["config"] = container_config
    raw["rootfs"] = {"type": "layers", "diff_ids": [str(d) for d in diff_ids]}
    raw["history"] = history
    return ImageConfig(raw)


def store_image(store: ImageStore, op: Operation, config: ImageConfig, layers: list[Descriptor],
                annotations: dict[str, str] | None = None) -> Descriptor:
    """Write the config and an OCI manifest for it; returns the manifest's descriptor."""
    config_desc = store.put_document(op, config.to_bytes(), OCI_CONFIG)
    manifest = Manifest(OCI_MANIFEST, config_desc, layers, dict(annotations or {}))
    return store.put_document(op, canonical_json(manifest.to_dict()), OCI_MANIFEST)
