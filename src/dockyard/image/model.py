"""What the image store hands out: images, their history, removal reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dockyard.types.digest import Digest
from dockyard.types.oci import Descriptor, ImageConfig, Manifest


@dataclass(frozen=True)
class Image:
    id: Digest                    # the config digest: Docker's image ID
    target: Descriptor            # what names point to: an index or a manifest
    manifest_digest: Digest       # the manifest for this platform
    chain_id: Digest | None       # the top layer's snapshot (None: an image without layers)
    size: int                     # bytes of the unpacked layers
    parent: str | None            # the local image it was committed or built from
    created_at: float             # when it entered this store
    repo_tags: tuple[str, ...] = ()     # fully qualified, e.g. docker.io/library/busybox:latest
    repo_digests: tuple[str, ...] = ()  # e.g. docker.io/library/busybox@sha256:...

    @property
    def dangling(self) -> bool:
        return not self.repo_tags


@dataclass
class ImageDetails:
    image: Image
    config: ImageConfig
    manifest: Manifest
    layer_sizes: list[int] = field(default_factory=list)  # per layer, unpacked bytes

    @property
    def container_config(self) -> dict[str, Any]:
        return self.config.container_config


@dataclass(frozen=True)
class HistoryEntry:
    id: str               # the image ID for the top entry, else "<missing>"
    created: str | None
    created_by: str
    size: int
    comment: str
    tags: tuple[str, ...]
    empty_layer: bool


@dataclass(frozen=True)
class ImageUser:
    """A container that uses an image (given to the store by the container service)."""

    container_id: str
    running: bool


@dataclass
class DeleteReport:
    untagged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def items(self) -> list[dict[str, str]]:
        """Docker's ImageDeleteResponseItem list."""
        return [{"Untagged": u} for u in self.untagged] + [{"Deleted": d} for d in self.deleted]


@dataclass
class PruneReport:
    images: DeleteReport = field(default_factory=DeleteReport)
    space_reclaimed: int = 0


@dataclass
class GCReport:
    blobs: int = 0
    snapshots: int = 0
    bytes: int = 0
