"""Overlay snapshots: layer trees shared by images and containers, the layer applier, the differ."""

from dockyard.snapshot.apply import ApplyLimits, ApplyResult, HostileLayer, InvalidLayer, apply_layer
from dockyard.snapshot.diff import Change, changes, write_diff
from dockyard.snapshot.mount import Mount, mount_all, mounted, unmount
from dockyard.snapshot.overlay import ACTIVE, COMMITTED, VIEW, OverlaySnapshotter, SnapshotInfo

__all__ = [
    "ACTIVE", "COMMITTED", "VIEW", "ApplyLimits", "ApplyResult", "Change", "HostileLayer", "InvalidLayer", "Mount",
    "OverlaySnapshotter", "SnapshotInfo", "apply_layer", "changes", "mount_all", "mounted", "unmount", "write_diff",
]
