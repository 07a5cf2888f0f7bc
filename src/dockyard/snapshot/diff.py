"""Layer diffs and change lists, read from an overlay upper dir (a container's writable layer).

`write_diff` turns the upper dir into a layer tar in the image-spec's format: overlay
whiteouts (0:0 character devices) become `.wh.NAME` entries, opaque directories get a
`.wh..wh..opq` entry, hard links inside the layer stay hard links, and xattrs travel as
PAX `SCHILY.xattr.*` records (never the trusted.overlay ones). `changes` lists what a
container changed against its image, as `docker diff` does.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.errors import NotImplementedFeature
from dockyard.snapshot.apply import OPAQUE_WHITEOUT, WHITEOUT_PREFIX, is_opaque, is_whiteout, lookup_lower, xattr_allowed

_REDIRECT_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy")

CHANGE_MODIFY = 0
CHANGE_ADD = 1
CHANGE_DELETE = 2
_KIND_LETTER = {CHANGE_MODIFY: "C", CHANGE_ADD: "A", CHANGE_DELETE: "D"}


@dataclass(frozen=True)
class Change:
    path: str   # absolute inside the container, e.g. /etc/hosts
    kind: int   # CHANGE_MODIFY, CHANGE_ADD or CHANGE_DELETE (the Docker API's numbers)

    def __str__(self) -> str:
        return f"{_KIND_LETTER[self.kind]} {self.path}"


def _walk(root: str, rel: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below `root`, in lexical order, parents before children."""
    directory = os.path.join(root, rel) if rel else root
    for name in sorted(os.listdir(directory)):
        child = f"{rel}/{name}" if rel else name
        st = os.lstat(os.path.join(root, child))
        yield child, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(root, child)


def _xattrs(path: str) -> dict[str, str]:
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in names:
        if name in _REDIRECT_XATTRS:
            raise NotImplementedFeature(f"overlay redirect/metacopy xattr {name} on {path}: mount without redirect_dir/metacopy")
        if xattr_allowed(name):
            try:
                out[f"SCHILY.xattr.{name}"] = os.getxattr(path, name, follow_symlinks=False).decode("utf-8", "surrogateescape")
            except OSError:
                continue
    return out


def _header(rel: str, st: os.stat_result, path: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = st.st_mtime_ns // 1_000_000_000
    info.pax_headers = _xattrs(path)
    return info


def write_diff(upper: str, out: BinaryIO) -> int:
    """Write the upper dir as an uncompressed layer tar to `out`; returns the number of entries."""
    count = 0
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=1 << 16) as tar:
        for rel, st in _walk(upper):
            path = os.path.join(upper, rel)
            mode = st.st_mode
            if is_whiteout(st):
                parent, _, name = rel.rpartition("/")
                info = tarfile.TarInfo(f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else f"{WHITEOUT_PREFIX}{name}")
                info.mtime = st.st_mtime_ns // 1_000_000_000
                tar.addfile(info)
                count += 1
                continue
            info = _header(rel, st, path)
            if stat.S_ISDIR(mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                if is_opaque(path):
                    opq = tarfile.TarInfo(f"{rel}/{OPAQUE_WHITEOUT}")
                    opq.mtime = info.mtime
                    tar.addfile(opq)
                    count += 1
            elif stat.S_ISREG(mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    info.type = tarfile.LNKTYPE
                    info.linkname = links[key]
                    tar.addfile(info)
                else:
                    if st.st_nlink > 1:
                        links[key] = rel
                    info.size = st.st_size
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
            elif stat.S_ISLNK(mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                tar.addfile(info)
            elif stat.S_ISFIFO(mode):
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
            else:
                continue  # sockets do not go into layers
            count += 1
    return count


def changes(upper: str, lowers: list[str]) -> list[Change]:
    """What the upper dir changes in the lower layers, in Docker's terms (archive.OverlayChanges)."""
    out: list[Change] = []
    changed_dirs: set[str] = set()
    for rel, st in _walk(upper):
        path = "/" + rel
        if is_whiteout(st):
            kind = CHANGE_DELETE
        else:
            kind = CHANGE_ADD
            found = lookup_lower(lowers, rel, strict=False)
            if found is not None:
                old = found[1]
                if stat.S_ISDIR(old.st_mode) and stat.S_ISDIR(st.st_mode) and not is_opaque(os.path.join(upper, rel)):
                    if (old.st_mode == st.st_mode and old.st_uid == st.st_uid and old.st_gid == st.st_gid
                            and old.st_mtime_ns // 1_000_000_000 == st.st_mtime_ns // 1_000_000_000):
                        continue  # only there as the parent of a change
                kind = CHANGE_MODIFY
        if stat.S_ISDIR(st.st_mode):
            changed_dirs.add(path)
        out.append(Change(path, kind))
        if kind in (CHANGE_ADD, CHANGE_DELETE):
            parent = os.path.dirname(path)
            if parent != "/" and parent not in changed_dirs:
                out.append(Change(parent, CHANGE_MODIFY))
                changed_dirs.add(parent)
    out.sort(key=lambda c: c.path)
    return out
