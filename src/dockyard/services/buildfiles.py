"""COPY and ADD: what is copied where, and the copy itself into a mounted snapshot.

The files are first written into a tar with the owners and modes the instruction asks for,
then extracted with dockyard.services.fscopy inside the snapshot's root, so every path is
resolved as the container would resolve it (a symlink in the image cannot send the copy
outside). ADD extracts local tar archives (plain, gzip, bzip2, xz) and downloads URLs.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import stat
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from dockyard.builder.context import BuildContext, Source, walk
from dockyard.errors import InvalidArgument
from dockyard.services import fscopy

MAX_DOWNLOAD = 8 << 30


@dataclass
class _Item:
    kind: str                        # "path" | "archive" | "heredoc" | "url"
    name: str                        # the source as written (a relative path, a heredoc name, a URL)
    context: BuildContext | None = None
    source: Source | None = None
    text: str = ""
    local: str = ""                  # a downloaded file
    digest: str = ""


@dataclass
class CopyPlan:
    keyword: str
    dest: str
    chown: str | None = None
    mode: int | None = None
    items: list[_Item] = field(default_factory=list)

    def add_sources(self, context: BuildContext, words: list[str], keyword: str, *, hash_content: bool,
                    source_id: str = "") -> None:
        for word in words:
            for src in context.resolve(word, instruction=keyword):
                kind = "archive" if keyword == "ADD" and not src.is_dir and _is_archive(context.path(src.rel)) \
                    else "path"
                digest = context.tree_hash(src) if hash_content else hashlib.sha256(
                    f"{source_id}\0{src.rel}".encode()).hexdigest()
                self.items.append(_Item(kind, src.rel, context=context, source=src, digest=digest))

    def add_heredoc(self, name: str, text: str) -> None:
        self.items.append(_Item("heredoc", name, text=text, digest=hashlib.sha256(text.encode()).hexdigest()))

    def add_url(self, url: str, local: str) -> None:
        h = hashlib.sha256()
        with open(local, "rb") as handle:
            while chunk := handle.read(1 << 20):
                h.update(chunk)
        self.items.append(_Item("url", url, local=local, digest=h.hexdigest()))

    def check(self, line: int) -> None:
        if not self.items:
            raise InvalidArgument(f"{self.keyword} has no source")
        if len(self.items) > 1 and not self.dest.endswith("/"):
            raise InvalidArgument(f"When using {self.keyword} with more than one source file, the destination must "
                                  "be a directory and end with a /")

    def comment(self) -> str:
        if len(self.items) == 1:
            item = self.items[0]
            prefix = "dir" if item.source is not None and item.source.is_dir else "file"
            digest = item.digest
        else:
            prefix = "multi"
            digest = hashlib.sha256("".join(i.digest for i in self.items).encode()).hexdigest()
        return f"{self.keyword} {prefix}:{digest} in {self.dest} "

    def cache_parts(self) -> list[Any]:
        return [self.keyword, self.dest, self.chown, self.mode, [(i.kind, i.name, i.digest) for i in self.items]]


def _is_archive(path: str) -> bool:
    try:
        with tarfile.open(path, "r:*") as tar:
            return tar.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False


def owner_ids(rootfs: str, chown: str) -> tuple[int, int]:
    """--chown=user[:group] against the image's /etc/passwd and /etc/group (group defaults to
    the same name, as Docker does)."""
    from dockyard.services.userlookup import resolve_user

    spec = chown if ":" in chown else f"{chown}:{chown}"
    user = resolve_user(rootfs, spec)
    return int(user["uid"]), int(user["gid"])  # type: ignore[call-overload]


def copy_into(root: int, plan: CopyPlan, uid: int, gid: int) -> None:
    """Carry out the plan inside the mounted root `root` (a directory descriptor)."""
    dest = plan.dest
    into_dir = dest.endswith("/") or len(plan.items) > 1 or fscopy.is_directory(root, dest)
    for item in plan.items:
        if item.kind == "archive":
            assert item.context is not None and item.source is not None
            fscopy.make_dirs(root, dest, uid, gid)
            with open(item.context.path(item.source.rel), "rb") as handle:
                fscopy.write_archive(root, dest, handle, fscopy.ExtractOptions(copy_uid_gid=True, create_parents=True))
            continue
        if item.source is not None and item.source.is_dir:
            target_dir, entries = dest, _tree_entries(item, "")
        else:
            name = _basename(item)
            target_dir, leaf = (dest, name) if into_dir else posixpath.split(dest.rstrip("/") or "/")
            entries = _tree_entries(item, leaf)
        fscopy.make_dirs(root, target_dir or "/", uid, gid)
        with tempfile.TemporaryFile() as spool:
            with tarfile.open(fileobj=spool, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for info, path, text in entries:
                    info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
                    if plan.mode is not None and not info.issym():
                        info.mode = plan.mode
                    if text is not None:
                        data = text.encode()
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
                    elif info.isreg():
                        with open(path, "rb") as handle:
                            tar.addfile(info, handle)
                    else:
                        tar.addfile(info)
            spool.seek(0)
            fscopy.write_archive(root, target_dir or "/", spool, fscopy.ExtractOptions(copy_uid_gid=True))


def _basename(item: _Item) -> str:
    if item.kind == "url":
        name = posixpath.basename(item.name.split("?", 1)[0].split("#", 1)[0].rstrip("/"))
        if not name:
            raise InvalidArgument(f"cannot determine a file name from the URL {item.name}")
        return name
    if item.kind == "heredoc":
        return item.name
    return posixpath.basename(item.name) or "."


def _tree_entries(item: _Item, leaf: str) -> list[tuple[tarfile.TarInfo, str, str | None]]:
    """(tar header, host path, literal text) for an item; a directory gives its contents."""
    if item.kind == "heredoc":
        info = tarfile.TarInfo(leaf)
        info.mode, info.mtime = 0o644, int(time.time())
        return [(info, "", item.text)]
    if item.kind == "url":
        st = os.stat(item.local)
        info = tarfile.TarInfo(leaf)
        info.mode, info.mtime, info.size = 0o600, int(st.st_mtime), st.st_size
        return [(info, item.local, None)]
    assert item.context is not None and item.source is not None
    top = item.context.path(item.source.rel)
    out: list[tuple[tarfile.TarInfo, str, str | None]] = []
    if not item.source.is_dir:
        st = os.stat(top)  # a top-level symlink is followed, as Docker does
        out.append((_info(leaf, st, top), top, None))
        return out
    for rel, st, full in walk(top):
        if not rel:
            continue
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            continue  # sockets, fifos and devices are not copied
        out.append((_info(rel, st, full), full, None))
    return out


def _info(name: str, st: os.stat_result, full: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(full)
    else:
        info.size = st.st_size
    return info


async def fetch_url(url: str, directory: str, checksum: str | None) -> str:
    """ADD <url>: download to a private file; verify --checksum=sha256:... when given."""
    import aiohttp

    fd, path = tempfile.mkstemp(prefix="add-", dir=directory)
    h = hashlib.sha256()
    size = 0
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=60)) as session:
            async with session.get(url) as response:
                if response.status != 200:
                    raise InvalidArgument(f"ADD {url}: the server answered {response.status} {response.reason}")
                with os.fdopen(fd, "wb") as out:
                    async for chunk in response.content.iter_chunked(1 << 20):
                        size += len(chunk)
                        if size > MAX_DOWNLOAD:
                            raise InvalidArgument(f"ADD {url}: larger than {MAX_DOWNLOAD} bytes")
                        h.update(chunk)
                        out.write(chunk)
                modified = response.headers.get("Last-Modified")
        if modified:
            from email.utils import parsedate_to_datetime

            try:
                stamp = parsedate_to_datetime(modified).timestamp()
                os.utime(path, (stamp, stamp))
            except (TypeError, ValueError):
                pass
        if checksum:
            algo, _, want = checksum.partition(":")
            if algo != "sha256" or not want:
                raise InvalidArgument(f"ADD --checksum={checksum}: only sha256:<hex> is supported")
            if h.hexdigest() != want:
                raise InvalidArgument(f"ADD {url}: checksum mismatch: expected {checksum}, got sha256:{h.hexdigest()}")
        return path
    except aiohttp.ClientError as e:
        os.unlink(path)
        raise InvalidArgument(f"ADD {url}: {e}") from None
    except BaseException:
        if os.path.exists(path):
            os.unlink(path)
        raise
