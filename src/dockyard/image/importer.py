"""`docker import`: an image made of one rootfs tarball (plain, gzip, zstd, bzip2 or xz)."""

from __future__ import annotations

import bz2
import lzma
from typing import BinaryIO

from dockyard.image.builder import new_config, now_rfc3339, store_image, store_layer
from dockyard.image.changes import apply_changes
from dockyard.image.model import Image
from dockyard.image.store import ImageStore
from dockyard.snapshot.compression import CorruptLayer, decompressed, decompression_errors, peekable
from dockyard.types.oci import Platform
from dockyard.types.reference import parse_image

_COPY = 1 << 20


def _open(stream: BinaryIO) -> BinaryIO:
    stream = peekable(stream)
    head = stream.peek(6)[:6]  # type: ignore[attr-defined]
    if head.startswith(b"BZh"):
        return bz2.BZ2File(stream)  # type: ignore[return-value]
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(stream)  # type: ignore[return-value]
    return decompressed(stream)[0]


def import_rootfs(store: ImageStore, source: BinaryIO, *, reference: str | None = None, changes: list[str] | None = None,
                  message: str = "", source_name: str = "-", platform: Platform | None = None) -> Image:
    """Import a rootfs tarball as a single-layer image (checked like any layer when unpacked)."""
    names = [parse_image(reference)] if reference else []
    created = now_rfc3339()
    comment = message or f"Imported from {source_name}"
    errors = decompression_errors()

    def copy(out: BinaryIO) -> None:
        reader = _open(source)
        try:
            while True:
                try:
                    chunk = reader.read(_COPY)
                except errors as e:
                    raise CorruptLayer(f"import {source_name}: the archive is damaged or truncated: {e}") from e
                if not chunk:
                    break
                out.write(chunk)
        finally:
            if reader is not source:
                reader.close()

    with store.operation() as op:
        layer, diff_id = store_layer(store, op, copy)
        cfg = apply_changes({}, changes or [])
        config = new_config(platform or store.platform, [diff_id], cfg, [{"created": created, "comment": comment}], created,
                            extra={"comment": comment})
        manifest = store_image(store, op, config, [layer])
        return store.create(op, manifest, names)
