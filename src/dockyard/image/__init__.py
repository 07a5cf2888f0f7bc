"""Images: the store and its operations (engine functions; the daemon exposes them later).

    ImageStore(root)                 list / lookup / get / details / history / tag / remove / prune / gc
    archive.load / archive.save      docker-archive and OCI layout (tar or directory)
    importer.import_rootfs           `docker import` with --change
    containers.commit / export / diff
    embedded.get_or_embedded         busybox:latest made from the host's static busybox
"""

from dockyard.image.model import DeleteReport, GCReport, HistoryEntry, Image, ImageDetails, ImageUser, PruneReport
from dockyard.image.store import DEFAULT_ROOT, ImageStore

__all__ = ["DEFAULT_ROOT", "DeleteReport", "GCReport", "HistoryEntry", "Image", "ImageDetails", "ImageStore", "ImageUser",
           "PruneReport"]
