"""The overlay snapshotter: layered filesystem trees shared by every image and container.

    <root>/metadata.db        snapshots(key, kind, parent, labels, ...) in sqlite
    <root>/snapshots/<id>/fs  the tree of one snapshot (an overlay upper or lower dir)
    <root>/snapshots/<id>/work  overlay's work dir (active snapshots only)

Kinds, as in containerd: an *active* snapshot is writable (prepare), a *view* is read-only,
a *committed* snapshot is immutable and can be the parent of others. Image layers are
committed snapshots named by their ChainID, so two images that share a base share its
directories. Nothing here mounts: `mounts()` returns descriptions (see mount.py).

Crash safety: a row is inserted before its directory is made and removed after it is deleted;
`recover()` deletes directories without a row, and active snapshots whose label
`dockyard.owner` names a process that is gone (an interrupted layer extraction).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import AlreadyExists, InvalidArgument, NotFound, WrongState
from dockyard.snapshot.mount import Mount, overlay_feature_options
from dockyard.utils.liveness import owner_alive
from dockyard.utils.sqlite import Database

ACTIVE = "active"
VIEW = "view"
COMMITTED = "committed"
OWNER_LABEL = "dockyard.owner"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
    parent TEXT REFERENCES snapshots(key),
    labels TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    size INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent)
"""


@dataclass(frozen=True)
class SnapshotInfo:
    key: str
    kind: str
    parent: str | None
    id: int
    labels: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    size: int = 0  # bytes of content, recorded at commit


def _info(row: Any) -> SnapshotInfo:
    return SnapshotInfo(row["key"], row["kind"], row["parent"], row["id"], json.loads(row["labels"]), row["created"], row["size"])


def disk_usage(path: str) -> int:
    """Bytes used by the files of a tree (hard links counted once)."""
    total, seen = 0, set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


class OverlaySnapshotter:
    def __init__(self, root: str) -> None:
        self.root = root
        self._dirs = os.path.join(root, "snapshots")
        os.makedirs(self._dirs, mode=0o700, exist_ok=True)
        self.db = Database(os.path.join(root, "metadata.db"), _SCHEMA)
        self._options = overlay_feature_options()

    # --- queries -------------------------------------------------------------------------

    def stat(self, key: str) -> SnapshotInfo:
        row = self.db.query_one("SELECT * FROM snapshots WHERE key = ?", (key,))
        if row is None:
            raise NotFound(f"snapshot {key}: not found")
        return _info(row)

    def exists(self, key: str) -> bool:
        return self.db.query_one("SELECT 1 FROM snapshots WHERE key = ?", (key,)) is not None

    def walk(self, kind: str | None = None) -> list[SnapshotInfo]:
        if kind is None:
            rows = self.db.query("SELECT * FROM snapshots ORDER BY id")
        else:
            rows = self.db.query("SELECT * FROM snapshots WHERE kind = ? ORDER BY id", (kind,))
        return [_info(r) for r in rows]

    def children(self, key: str) -> list[str]:
        return [r["key"] for r in self.db.query("SELECT key FROM snapshots WHERE parent = ?", (key,))]

    def chain(self, key: str) -> list[SnapshotInfo]:
        """The snapshot and its ancestors, top first."""
        out = []
        current: str | None = key
        while current is not None:
            info = self.stat(current)
            out.append(info)
            current = info.parent
        return out

    def fs_dir(self, info_or_id: SnapshotInfo | int) -> str:
        ident = info_or_id.id if isinstance(info_or_id, SnapshotInfo) else info_or_id
        return os.path.join(self._dirs, str(ident), "fs")

    def upper_dir(self, key: str) -> str:
        """The writable tree of an active snapshot (what a layer is applied into, what a diff reads)."""
        info = self.stat(key)
        if info.kind != ACTIVE:
            raise WrongState(f"snapshot {key} is {info.kind}, not active")
        return self.fs_dir(info)

    def lower_dirs(self, key: str) -> list[str]:
        """The trees beneath a snapshot, top first."""
        info = self.stat(key)
        return [self.fs_dir(i) for i in self.chain(info.parent)] if info.parent else []

    def usage(self, key: str) -> int:
        return disk_usage(self.fs_dir(self.stat(key)))

    # --- changes -------------------------------------------------------------------------

    def _create(self, key: str, parent: str | None, kind: str, labels: dict[str, str] | None) -> SnapshotInfo:
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        now = time.time()
        with self.db.transaction() as tx:
            if tx.query_one("SELECT 1 FROM snapshots WHERE key = ?", (key,)):
                raise AlreadyExists(f"snapshot {key}: already exists")
            if parent is not None:
                prow = tx.query_one("SELECT kind FROM snapshots WHERE key = ?", (parent,))
                if prow is None:
                    raise NotFound(f"parent snapshot {parent}: not found")
                if prow["kind"] != COMMITTED:
                    raise WrongState(f"parent snapshot {parent} is {prow['kind']}: only committed snapshots can be parents")
            cur = tx.execute("INSERT INTO snapshots (key, kind, parent, labels, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
                             (key, kind, parent, json.dumps(labels or {}), now, now))
            ident = int(cur.lastrowid or 0)
            base = os.path.join(self._dirs, str(ident))
            shutil.rmtree(base, ignore_errors=True)  # a leftover of a crash with a reused id
            os.makedirs(os.path.join(base, "fs"), mode=0o755)
            if kind == ACTIVE:
                os.mkdir(os.path.join(base, "work"), 0o700)
        return self.stat(key)

    def prepare(self, key: str, parent: str | None = None, labels: dict[str, str] | None = None) -> list[Mount]:
        """A new writable snapshot on top of `parent`; returns how to mount it."""
        return self._mounts(self._create(key, parent, ACTIVE, labels))

    def view(self, key: str, parent: str | None = None, labels: dict[str, str] | None = None) -> list[Mount]:
        """A new read-only snapshot of `parent`; returns how to mount it."""
        return self._mounts(self._create(key, parent, VIEW, labels))

    def mounts(self, key: str) -> list[Mount]:
        info = self.stat(key)
        if info.kind == COMMITTED:
            raise WrongState(f"snapshot {key} is committed: make a view of it to mount it")
        return self._mounts(info)

    def _mounts(self, info: SnapshotInfo) -> list[Mount]:
        lowers = [self.fs_dir(i) for i in self.chain(info.parent)] if info.parent else []
        if info.kind == ACTIVE:
            if not lowers:
                return [Mount("bind", self.fs_dir(info), ("rbind", "rw"))]
            work = os.path.join(self._dirs, str(info.id), "work")
            return [Mount("overlay", "overlay", (*self._options, f"lowerdir={':'.join(lowers)}",
                                                 f"upperdir={self.fs_dir(info)}", f"workdir={work}"))]
        if not lowers:
            return [Mount("bind", self.fs_dir(info), ("rbind", "ro"))]
        if len(lowers) == 1:
            return [Mount("bind", lowers[0], ("rbind", "ro"))]
        return [Mount("overlay", "overlay", ("ro", *self._options, f"lowerdir={':'.join(lowers)}"))]

    def commit(self, name: str, key: str, labels: dict[str, str] | None = None, size: int | None = None,
               parent: str | None = None) -> SnapshotInfo:
        """Turn the active snapshot `key` into the committed snapshot `name` (same directory).

        `parent` sets the parent of a snapshot prepared without one (a layer unpacked while its
        parent was still being unpacked: a tree does not depend on its parent, only its mounts do).
        """
        now = time.time()
        with self.db.transaction() as tx:
            row = tx.query_one("SELECT * FROM snapshots WHERE key = ?", (key,))
            if row is None:
                raise NotFound(f"snapshot {key}: not found")
            if row["kind"] != ACTIVE:
                raise WrongState(f"snapshot {key} is {row['kind']}: only active snapshots can be committed")
            if tx.query_one("SELECT 1 FROM snapshots WHERE key = ?", (name,)):
                raise AlreadyExists(f"snapshot {name}: already exists")
            if tx.query_one("SELECT 1 FROM snapshots WHERE parent = ?", (key,)):
                raise WrongState(f"snapshot {key} has children")
            if parent is not None:
                if row["parent"] not in (None, parent):
                    raise WrongState(f"snapshot {key} already has parent {row['parent']}")
                prow = tx.query_one("SELECT kind FROM snapshots WHERE key = ?", (parent,))
                if prow is None or prow["kind"] != COMMITTED:
                    raise WrongState(f"parent snapshot {parent} is not a committed snapshot")
            else:
                parent = row["parent"]
            if size is None:
                size = disk_usage(self.fs_dir(row["id"]))
            new_labels = json.loads(row["labels"])
            new_labels.pop(OWNER_LABEL, None)
            new_labels.update(labels or {})
            tx.execute("UPDATE snapshots SET key = ?, kind = ?, parent = ?, labels = ?, updated = ?, size = ? WHERE id = ?",
                       (name, COMMITTED, parent, json.dumps(new_labels), now, size, row["id"]))
        shutil.rmtree(os.path.join(self._dirs, str(row["id"]), "work"), ignore_errors=True)
        return self.stat(name)

    def update_labels(self, key: str, labels: dict[str, str | None]) -> SnapshotInfo:
        with self.db.transaction() as tx:
            row = tx.query_one("SELECT labels FROM snapshots WHERE key = ?", (key,))
            if row is None:
                raise NotFound(f"snapshot {key}: not found")
            current = json.loads(row["labels"])
            for k, v in labels.items():
                if v is None:
                    current.pop(k, None)
                else:
                    current[k] = v
            tx.execute("UPDATE snapshots SET labels = ?, updated = ? WHERE key = ?", (json.dumps(current), time.time(), key))
        return self.stat(key)

    def remove(self, key: str) -> None:
        """Remove a snapshot that nothing is built on; its directory goes after its row."""
        with self.db.transaction() as tx:
            row = tx.query_one("SELECT id FROM snapshots WHERE key = ?", (key,))
            if row is None:
                raise NotFound(f"snapshot {key}: not found")
            child = tx.query_one("SELECT key FROM snapshots WHERE parent = ?", (key,))
            if child is not None:
                raise WrongState(f"snapshot {key} is in use: snapshot {child['key']} is built on it")
            tx.execute("DELETE FROM snapshots WHERE id = ?", (row["id"],))
        self._remove_dir(row["id"])

    def _remove_dir(self, ident: int) -> None:
        base = os.path.join(self._dirs, str(ident))
        if not os.path.exists(base):
            return
        # Rename first, so that a crash half-way through the deletion leaves no half tree under a live id.
        trash = os.path.join(self._dirs, f"rm-{ident}-{time.monotonic_ns()}")
        os.rename(base, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def recover(self) -> list[str]:
        """Clean up after a crash: abandoned extractions, directories without a row."""
        removed = []
        for info in self.walk(ACTIVE):
            owner = info.labels.get(OWNER_LABEL)
            if owner and not owner_alive(owner):
                try:
                    self.remove(info.key)
                    removed.append(info.key)
                except (WrongState, NotFound):
                    pass
        known = {str(i.id) for i in self.walk()}
        for name in os.listdir(self._dirs):
            if name not in known:
                if name.isdigit() and self.db.query_one("SELECT 1 FROM snapshots WHERE id = ?", (int(name),)):
                    continue
                shutil.rmtree(os.path.join(self._dirs, name), ignore_errors=True)
                removed.append(name)
        return removed

    def close(self) -> None:
        self.db.close()
