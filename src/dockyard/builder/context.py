"""The build context: a directory of sources, globbed and hashed for COPY/ADD.

Sources are resolved inside the context root (``..`` and symlinks cannot leave it), globs use
Go's filepath.Match syntax as Docker does, and the cache key of a copy is a hash of the files'
names, types, modes and contents - never their times, so touching a file without changing it
keeps the cache.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from dataclasses import dataclass

from dockyard.builder.dockerignore import component_matches
from dockyard.errors import InvalidArgument, NotFound


@dataclass(frozen=True)
class Source:
    """One matched source: its path relative to the root and what it is."""

    rel: str          # "" for the root itself
    is_dir: bool


def clean(path: str) -> str:
    """A relative, normalised path inside the root ("" for the root)."""
    norm = posixpath.normpath("/" + path.replace("\\", "/") if path else "/")
    return norm.lstrip("/")


def has_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


class BuildContext:
    """A context directory; `root` is trusted to be ours (extracted by the daemon)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self._hashes: dict[str, str] = {}

    def path(self, rel: str) -> str:
        """The host path of `rel`, resolving symlinks as if the context were the root directory."""
        parts = [p for p in clean(rel).split("/") if p]
        resolved: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            candidate = os.path.join(self.root, *resolved, part)
            if os.path.islink(candidate):
                hops += 1
                if hops > 40:
                    raise InvalidArgument(f"too many levels of symbolic links in {rel}")
                target = os.readlink(candidate)
                if target.startswith("/"):
                    resolved = []
                parts = [p for p in target.split("/") if p] + parts
                continue
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            if part != ".":
                resolved.append(part)
        return os.path.join(self.root, *resolved)

    def resolve(self, pattern: str, *, instruction: str = "COPY") -> list[Source]:
        """The sources a COPY/ADD argument names (a path or a glob); an error when none."""
        rel = clean(pattern)
        if not has_glob(rel):
            full = self.path(rel)
            if not os.path.lexists(full):
                raise NotFound(f"{instruction} failed: file not found in build context or excluded by "
                               f".dockerignore: stat {rel or '.'}: file does not exist")
            return [Source(rel, os.path.isdir(full))]
        found = self._glob(rel.split("/"), "")
        if not found:
            raise NotFound(f"{instruction} failed: no source files were specified (the pattern {pattern!r} "
                           "matches nothing in the build context)")
        return sorted(found, key=lambda s: s.rel)

    def _glob(self, parts: list[str], base: str) -> list[Source]:
        head, rest = parts[0], parts[1:]
        directory = self.path(base)
        try:
            names = sorted(os.listdir(directory))
        except (NotADirectoryError, FileNotFoundError):
            return []
        out: list[Source] = []
        for name in names:
            if not (component_matches(head, name) if has_glob(head) else name == head):
                continue
            rel = f"{base}/{name}" if base else name
            full = self.path(rel)
            if rest:
                if os.path.isdir(full):
                    out.extend(self._glob(rest, rel))
            elif os.path.lexists(full):
                out.append(Source(rel, os.path.isdir(full)))
        return out

    # --- hashing ------------------------------------------------------------------------

    def file_hash(self, full: str, st: os.stat_result) -> str:
        key = f"{full}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}"
        cached = self._hashes.get(key)
        if cached is None:
            h = hashlib.sha256()
            with open(full, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    h.update(chunk)
            cached = self._hashes[key] = h.hexdigest()
        return cached

    def tree_hash(self, source: Source) -> str:
        """sha256 over the names, types, modes and contents below `source` (times left out)."""
        h = hashlib.sha256()
        top = self.path(source.rel)
        for rel, st, full in walk(top):
            kind = stat.S_IFMT(st.st_mode)
            h.update(f"{rel}\0{kind:o}\0{stat.S_IMODE(st.st_mode):o}\0".encode())
            if stat.S_ISREG(st.st_mode):
                h.update(self.file_hash(full, st).encode())
            elif stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(full).encode())
            h.update(b"\n")
        return h.hexdigest()


def walk(top: str):  # type: ignore[no-untyped-def]
    """(relative path, lstat, full path) of `top` ("" for itself) and, for a directory, everything
    below it, sorted; symlinks are not followed."""
    st = os.lstat(top)
    yield "", st, top
    if stat.S_ISDIR(st.st_mode):
        yield from _walk_dir(top, "")


def _walk_dir(directory: str, rel: str):  # type: ignore[no-untyped-def]
    for name in sorted(os.listdir(directory)):
        full = os.path.join(directory, name)
        child = f"{rel}/{name}" if rel else name
        st = os.lstat(full)
        yield child, st, full
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(full, child)
