"""The build cache: what a step made, keyed on its parent image, the instruction and its inputs.

A key is the sha256 of a canonical JSON list: the parent image ID, the instruction as it will
run (expanded words, flags, the build args a RUN sees) and, for COPY/ADD, the hash of the copied
content. The value is the image ID the step produced; a hit is only used while that image is
still in the store (the caller checks). Entries are files written atomically, one per key, so
concurrent builds and a crash mid-write never leave a torn entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from dockyard.utils.fileio import write_atomic


def cache_key(parent: str, parts: list[Any]) -> str:
    text = json.dumps([parent, *parts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class BuildCache:
    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, mode=0o700, exist_ok=True)

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key[:2], key)

    def get(self, key: str) -> str | None:
        try:
            with open(self._path(key), encoding="utf-8") as handle:
                value = handle.read().strip()
        except FileNotFoundError:
            return None
        return value if value.startswith("sha256:") and len(value) == 71 else None

    def put(self, key: str, image_id: str) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_atomic(path, image_id.encode(), 0o600, sync=False)

    def forget(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass

    def prune(self, live: set[str] | None = None) -> int:
        """Remove every entry (or those whose image is not in `live`); the number removed."""
        removed = 0
        for sub in os.listdir(self.root):
            folder = os.path.join(self.root, sub)
            if not os.path.isdir(folder):
                continue
            for name in os.listdir(folder):
                if live is not None and self.get(name) in live:
                    continue
                os.unlink(os.path.join(folder, name))
                removed += 1
        return removed
