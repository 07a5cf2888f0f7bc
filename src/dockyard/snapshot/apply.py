"""Applying a layer (a tar stream, OCI image-spec layer.md) to a snapshot's overlay upper dir.

The layer is written into the empty upper dir of a new snapshot, in overlayfs' own format:
`.wh.NAME` becomes a whiteout (a 0:0 character device), `.wh..wh..opq` makes its directory
opaque (xattr trusted.overlay.opaque=y). The lower layers are read only to copy up what a
layer needs from them: the metadata of a parent directory it writes into, the target of a
hard link.

Hostile layers are contained. Every rule below raises HostileLayer before anything is
written outside the upper dir, and the caller throws the snapshot away:
  - a path with a `..` component; absolute paths are taken relative to the root (as tar does);
  - a path whose parent is a symlink (planted by an earlier entry, or in a lower layer):
    nothing is ever written through a symlink;
  - a relative symlink whose target climbs out of the root (Docker's breakout rule);
  - a hard link whose target climbs out, is missing, or is a directory;
  - a device node outside /dev (by default; see ApplyLimits.devices);
  - sizes past the limits (one file, the whole layer, the number of entries, a header);
  - xattrs in the trusted.overlay namespace (they would steer the overlay itself).
Final components are created with O_EXCL/O_NOFOLLOW, and the applier tracks every path it
made, so it knows what is a real directory without asking the filesystem.
"""

from __future__ import annotations

import base64
import errno
import io
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from collections.abc import Callable
from typing import BinaryIO

from dockyard.errors import InvalidArgument
from dockyard.snapshot import compression
from dockyard.types.digest import Digest, Digester, DigestMismatch

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
_READ_CHUNK = 1 << 20
_IS_ROOT = os.geteuid() == 0

# what each tracked path in the upper dir is
_DIR, _FILE, _LINK, _WHITEOUT = "d", "f", "l", "w"


class InvalidLayer(InvalidArgument):
    """A layer that is not a valid tar archive, or that does not match its diff ID."""


class HostileLayer(InvalidLayer):
    """A layer with an entry that tries to reach outside its snapshot or past a limit."""


@dataclass(frozen=True)
class ApplyLimits:
    max_entries: int = 5_000_000
    max_file_size: int = 64 << 30
    max_total_size: int = 512 << 30
    max_header_size: int = 1 << 20   # a pax header or GNU long name
    devices: str = "dev"             # where device nodes may be made: "all", "dev" (under /dev), "none"


@dataclass
class ApplyResult:
    diff_id: Digest
    size: int        # bytes of file content written
    entries: int
    compression: str | None


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def xattr_allowed(name: str) -> bool:
    """The xattrs a layer may carry into a snapshot (and a diff may carry out)."""
    if name.startswith("trusted.overlay.") or name.startswith("user.overlay."):
        return False
    return (name.startswith("user.") or name.startswith("trusted.") or name == "security.capability"
            or name in ("system.posix_acl_access", "system.posix_acl_default"))


def clean_name(name: str) -> str:
    """A tar path relative to the root: no leading '/' or './', no empty parts; '..' is hostile."""
    if "\x00" in name:
        raise HostileLayer(f"entry {name!r}: NUL byte in the name")
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise HostileLayer(f"entry {name!r}: '..' in the path")
        if len(os.fsencode(part)) > 255:
            raise HostileLayer(f"entry {name[:80]!r}...: a path component is longer than 255 bytes")
        parts.append(part)
    rel = "/".join(parts)
    if len(os.fsencode(rel)) > 4000:
        raise HostileLayer(f"entry {name[:80]!r}...: path longer than 4000 bytes")
    return rel


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0]


def lookup_lower(lowers: list[str], rel: str, *, strict: bool) -> tuple[str, os.stat_result] | None:
    """Where `rel` is in the merged view of read-only overlay layers (top first), if anywhere.

    Whiteouts and opaque directories hide what is beneath them, as overlayfs does. No
    symlink is followed: a parent that is a symlink raises HostileLayer when `strict`, and
    otherwise means "not there".
    """
    parts = rel.split("/")
    for lower in lowers:
        cur = lower
        hides_below = False
        for i, part in enumerate(parts):
            cur = os.path.join(cur, part)
            try:
                st = os.lstat(cur)
            except (FileNotFoundError, NotADirectoryError):
                break
            if is_whiteout(st):
                return None
            if i == len(parts) - 1:
                return cur, st
            if stat.S_ISLNK(st.st_mode) and strict:
                raise HostileLayer(f"path {rel!r} goes through {'/'.join(parts[:i + 1])!r}, a symlink in a lower layer")
            if not stat.S_ISDIR(st.st_mode):
                return None
            if is_opaque(cur):
                hides_below = True
        if hides_below:
            return None
    return None


class _HashingRaw(io.RawIOBase):
    """Reads the uncompressed layer, hashing every byte (the diff ID), and counting them."""

    def __init__(self, source: BinaryIO, limit: int) -> None:
        self._source = source
        self._digester = Digester()
        self._limit = limit
        self._errors = compression.decompression_errors()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._source.read(len(buffer))
        except self._errors as e:
            raise compression.CorruptLayer(f"layer stream is damaged or truncated: {e}") from e
        n = len(data)
        buffer[:n] = data
        self._digester.update(data)
        if self._digester.size > self._limit:
            raise HostileLayer(f"layer expands to more than {self._limit} bytes")
        return n

    def tell(self) -> int:
        return self._digester.size

    def digest(self) -> Digest:
        return self._digester.digest()


class _GuardedTarInfo(tarfile.TarInfo):
    """tarfile's header parsing, with a bound on the metadata blocks it reads into memory."""

    max_header_size = ApplyLimits.max_header_size

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                         tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE) and self.size > self.max_header_size:
            raise HostileLayer(f"tar header block of {self.size} bytes (more than {self.max_header_size})")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


class _TarSource:
    """What tarfile.TarInfo.fromtarfile needs of a TarFile, over a forward-only buffered stream."""

    encoding = "utf-8"
    errors = "surrogateescape"

    def __init__(self, fileobj: io.BufferedReader) -> None:
        self.fileobj = fileobj
        self.offset = 0
        self.pax_headers: dict[str, str] = {}

    def skip_to(self, offset: int) -> None:
        gap = offset - self.fileobj.tell()
        if gap < 0:
            raise InvalidLayer(f"tar stream went backwards at offset {offset}")
        while gap > 0:
            chunk = self.fileobj.read(min(gap, _READ_CHUNK))
            if not chunk:
                raise InvalidLayer("truncated layer: unexpected end of the tar stream")
            gap -= len(chunk)


def iter_tar(stream: io.BufferedReader, max_header_size: int = ApplyLimits.max_header_size):  # type: ignore[no-untyped-def]
    """Yield (TarInfo, source) for each member of a tar stream, strictly: a damaged header is an error.

    The member's data is at the current position of `stream` when it is yielded; reading it
    is optional (what is left is skipped).
    """
    source = _TarSource(stream)
    info_cls = type("_Guarded", (_GuardedTarInfo,), {"max_header_size": max_header_size})
    while True:
        source.skip_to(source.offset)
        try:
            info = info_cls.fromtarfile(source)
        except tarfile.EOFHeaderError:
            return
        except tarfile.EmptyHeaderError:
            return  # the stream ended at a block boundary, without end-of-archive blocks
        except tarfile.TruncatedHeaderError as e:
            raise InvalidLayer(f"truncated layer: {e} at offset {source.offset}") from None
        except tarfile.HeaderError as e:
            raise InvalidLayer(f"invalid tar header at offset {source.offset}: {e}") from None
        yield info, source


class _Applier:
    def __init__(self, root: str, lowers: list[str] | Callable[[], list[str]], limits: ApplyLimits) -> None:
        self.root = root
        self._lowers = lowers
        self.limits = limits
        self.present: dict[str, str] = {"": _DIR}   # what this applier has put in the upper dir
        self.created: set[str] = set()              # paths that came from entries of this layer
        self.opaque: set[str] = set()
        self.dir_times: dict[str, tuple[int, int]] = {}
        self.implied: dict[str, None] = {}          # parent dirs made before the lowers were known
        self.size = 0
        self.entries = 0
        self._buf = bytearray(_READ_CHUNK)

    def abs(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    # --- the lower layers -------------------------------------------------------------------

    def _hidden_by_upper(self, rel: str) -> bool:
        p = rel
        while p:
            p = _parent(p)
            if p in self.opaque:
                return True
            if not p:
                break
        return False

    def lower_lookup(self, rel: str) -> tuple[str, os.stat_result] | None:
        """Where `rel` is in the merged view of the lower layers (never through a symlink)."""
        if self._hidden_by_upper(rel):
            return None
        return lookup_lower(self.lowers(), rel, strict=True)

    def lowers(self) -> list[str]:
        """The lower dirs; a callable is asked only when needed (it may wait for layers still being unpacked)."""
        if callable(self._lowers):
            self._lowers = list(self._lowers())
        return self._lowers

    def _copy_meta_from(self, src: str, st: os.stat_result, dst: str) -> None:
        if _IS_ROOT:
            os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(dst, stat.S_IMODE(st.st_mode))
        for name in os.listxattr(src, follow_symlinks=False):
            if xattr_allowed(name):
                self._setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), stat.S_ISLNK(st.st_mode))
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def copy_up(self, rel: str) -> str:
        """Bring `rel` from the lower layers into the upper dir (for a hard link); its kind."""
        found = self.lower_lookup(rel)
        if found is None:
            raise InvalidLayer(f"hard link target {rel!r} does not exist")
        src, st = found
        self.ensure_dir(_parent(rel))
        dst = self.abs(rel)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            raise HostileLayer(f"hard link target {rel!r} is a directory")
        if stat.S_ISREG(mode):
            fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                try:
                    while chunk := os.read(fd_in, _READ_CHUNK):
                        os.write(fd_out, chunk)
                finally:
                    os.close(fd_out)
            finally:
                os.close(fd_in)
            kind = _FILE
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), dst)
            kind = _LINK
        else:
            os.mknod(dst, mode, st.st_rdev)
            kind = _FILE
        self._copy_meta_from(src, st, dst)
        self.present[rel] = kind
        return kind

    # --- the upper dir ----------------------------------------------------------------------

    def ensure_dir(self, rel: str) -> None:
        """Make `rel` a real directory of the upper dir, copying its metadata up from below."""
        kind = self.present.get(rel)
        if kind == _DIR:
            return
        if kind == _LINK:
            raise HostileLayer(f"refusing to write through {rel!r}: it is a symlink")
        if kind == _FILE:
            raise InvalidLayer(f"{rel!r} is not a directory, but the layer writes beneath it")
        self.ensure_dir(_parent(rel))
        path = self.abs(rel)
        if kind == _WHITEOUT:
            # deleted from the layers below, then written into: an empty (opaque) directory
            os.unlink(path)
            os.mkdir(path, 0o755)
            self._setxattr(path, OVERLAY_OPAQUE_XATTR, b"y", False)
            self.opaque.add(rel)
            self.present[rel] = _DIR
            return
        if callable(self._lowers):
            # the layers beneath may still be unpacking: do not wait for them now; finish()
            # gives the directory its metadata from below (and checks it is a directory there)
            os.mkdir(path, 0o755)
            self.implied[rel] = None
            self.present[rel] = _DIR
            return
        found = self._lower_dir(rel)
        os.mkdir(path, 0o755 if found is None else 0o700)
        if found is not None:
            self._inherit(rel, *found)
        self.present[rel] = _DIR

    def _lower_dir(self, rel: str) -> tuple[str, os.stat_result] | None:
        """`rel` in the lower layers, which the layer writes beneath: a directory there, or nothing."""
        found = self.lower_lookup(rel)
        if found is not None:
            st = found[1]
            if stat.S_ISLNK(st.st_mode):
                raise HostileLayer(f"refusing to write through {rel!r}: it is a symlink in a lower layer")
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidLayer(f"{rel!r} is not a directory in the lower layers, but the layer writes beneath it")
        return found

    def _inherit(self, rel: str, src: str, st: os.stat_result) -> None:
        """The upper directory `rel` takes the lower one's owner, mode, xattrs and times."""
        self._copy_meta_from(src, st, self.abs(rel))
        self.dir_times[rel] = (st.st_atime_ns, st.st_mtime_ns)

    def remove(self, rel: str) -> None:
        kind = self.present.pop(rel, None)
        if kind is None:
            return
        path = self.abs(rel)
        if kind == _DIR:
            shutil.rmtree(path)
            prefix = rel + "/"
            for table in (self.present, self.dir_times, self.implied):
                for key in [k for k in table if k.startswith(prefix)]:
                    del table[key]
            self.created = {k for k in self.created if not k.startswith(prefix)}
            self.opaque = {k for k in self.opaque if not k.startswith(prefix) and k != rel}
            self.dir_times.pop(rel, None)
            self.implied.pop(rel, None)
        else:
            os.unlink(path)
        self.created.discard(rel)

    def _setxattr(self, path: str, name: str, value: bytes, is_symlink: bool) -> None:
        try:
            os.setxattr(path, name, value, follow_symlinks=False)
        except OSError as e:
            # user.* xattrs are not allowed on symlinks; a filesystem may not take some names
            if is_symlink and e.errno in (errno.EPERM, errno.ENOTSUP):
                return
            if e.errno == errno.ENOTSUP:
                return
            raise

    def _meta(self, rel: str, info: tarfile.TarInfo, fd: int | None = None) -> None:
        path = self.abs(rel)
        symlink = info.issym()
        if _IS_ROOT:
            if fd is not None:
                os.fchown(fd, info.uid, info.gid)
            else:
                os.chown(path, info.uid, info.gid, follow_symlinks=False)
        if not symlink:
            mode = info.mode & 0o7777
            if fd is not None:
                os.fchmod(fd, mode)
            else:
                os.chmod(path, mode)
        for key, value in info.pax_headers.items():
            if key.startswith("SCHILY.xattr."):
                name, raw = key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape")
            elif key.startswith("LIBARCHIVE.xattr."):
                name, raw = key[len("LIBARCHIVE.xattr."):], base64.b64decode(value + "=" * (-len(value) % 4))
            else:
                continue
            if xattr_allowed(name):
                self._setxattr(path, name, raw, symlink)
        mtime = int(float(info.mtime) * 1e9)
        atime_text = info.pax_headers.get("atime")
        atime = int(float(atime_text) * 1e9) if atime_text else mtime
        if info.isdir():
            self.dir_times[rel] = (atime, mtime)
        elif fd is not None:
            os.utime(fd, ns=(atime, mtime))
        else:
            os.utime(path, ns=(atime, mtime), follow_symlinks=False)

    # --- entries --------------------------------------------------------------------------

    def entry(self, info: tarfile.TarInfo, stream: io.BufferedReader) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise HostileLayer(f"layer has more than {self.limits.max_entries} entries")
        rel = clean_name(info.name)
        base = rel.rpartition("/")[2]
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(rel, base)
            return
        if rel == "":
            if not info.isdir():
                raise InvalidLayer(f"entry {info.name!r}: the root can only be a directory")
            self._meta("", info)
            return
        parent = _parent(rel)
        self.ensure_dir(parent)
        path = self.abs(rel)
        if info.isdir():
            if self.present.get(rel) != _DIR:
                self.remove(rel)
                os.mkdir(path, 0o700)
                self.present[rel] = _DIR
            self.implied.pop(rel, None)  # its own entry says what it is
            self._meta(rel, info)
        elif info.isreg():
            self.regular(rel, info, stream)
        elif info.issym():
            self.check_symlink(rel, info.linkname)
            self.remove(rel)
            os.symlink(info.linkname, path)
            self.present[rel] = _LINK
            self._meta(rel, info)
        elif info.islnk():
            self.hardlink(rel, info)
        elif info.ischr() or info.isblk():
            self.check_device(rel, info)
            self.remove(rel)
            os.mknod(path, (stat.S_IFCHR if info.ischr() else stat.S_IFBLK) | 0o600, os.makedev(info.devmajor, info.devminor))
            self.present[rel] = _WHITEOUT if info.ischr() and info.devmajor == 0 and info.devminor == 0 else _FILE
            self._meta(rel, info)
        elif info.isfifo():
            self.remove(rel)
            os.mkfifo(path, 0o600)
            self.present[rel] = _FILE
            self._meta(rel, info)
        else:
            raise InvalidLayer(f"entry {info.name!r}: unsupported tar entry type {info.type!r}")
        self.created.add(rel)

    def regular(self, rel: str, info: tarfile.TarInfo, stream: io.BufferedReader) -> None:
        size = info.size
        if size > self.limits.max_file_size:
            raise HostileLayer(f"entry {info.name!r}: {size} bytes is more than the {self.limits.max_file_size} allowed for a file")
        self.size += size
        if self.size > self.limits.max_total_size:
            raise HostileLayer(f"layer content exceeds {self.limits.max_total_size} bytes")
        self.remove(rel)
        fd = os.open(self.abs(rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            self.present[rel] = _FILE
            sparse = getattr(info, "sparse", None)
            if sparse:
                for offset, length in sparse:
                    os.lseek(fd, offset, os.SEEK_SET)
                    self._copy(fd, stream, length, info)
                os.ftruncate(fd, size)
            else:
                self._copy(fd, stream, size, info)
            self._meta(rel, info, fd)
        finally:
            os.close(fd)

    def _copy(self, fd: int, stream: io.BufferedReader, length: int, info: tarfile.TarInfo) -> None:
        view = memoryview(self._buf)
        while length > 0:
            n = stream.readinto(view[: min(length, _READ_CHUNK)])
            if not n:
                raise InvalidLayer(f"truncated layer: entry {info.name!r} ends early")
            written = 0
            while written < n:
                written += os.write(fd, view[written:n])
            length -= n

    def check_symlink(self, rel: str, target: str) -> None:
        if "\x00" in target:
            raise HostileLayer(f"symlink {rel!r}: NUL byte in the target")
        if not target:
            raise InvalidLayer(f"symlink {rel!r} has an empty target")
        if target.startswith("/"):
            return  # resolved inside the container's root
        joined = os.path.normpath(os.path.join(_parent(rel), target))
        if joined == ".." or joined.startswith("../"):
            raise HostileLayer(f"symlink {rel!r} -> {target!r} points outside the root")

    def hardlink(self, rel: str, info: tarfile.TarInfo) -> None:
        try:
            target = clean_name(info.linkname)
        except HostileLayer as e:
            raise HostileLayer(f"hard link {rel!r} -> {info.linkname!r}: {e}") from None
        if not target or target == rel:
            raise InvalidLayer(f"hard link {rel!r} -> {info.linkname!r}: invalid target")
        self.ensure_dir(_parent(target))
        kind = self.present.get(target)
        if kind is None:
            kind = self.copy_up(target)
        if kind == _DIR:
            raise HostileLayer(f"hard link {rel!r} -> {target!r}: target is a directory")
        if kind == _WHITEOUT:
            raise InvalidLayer(f"hard link {rel!r} -> {target!r}: target was deleted")
        self.ensure_dir(_parent(rel))
        self.remove(rel)
        os.link(self.abs(target), self.abs(rel), follow_symlinks=False)
        self.present[rel] = kind

    def check_device(self, rel: str, info: tarfile.TarInfo) -> None:
        policy = self.limits.devices
        if info.ischr() and info.devmajor == 0 and info.devminor == 0:
            return  # a whiteout written as such
        if policy == "all" or (policy == "dev" and (rel == "dev" or rel.startswith("dev/"))):
            return
        where = "anywhere" if policy == "none" else "outside /dev"
        raise HostileLayer(f"entry {rel!r}: device node {info.devmajor}:{info.devminor} is not allowed {where}")

    def whiteout(self, rel: str, base: str) -> None:
        parent = _parent(rel)
        if base == OPAQUE_WHITEOUT:
            self.ensure_dir(parent)
            self._setxattr(self.abs(parent), OVERLAY_OPAQUE_XATTR, b"y", False)
            self.opaque.add(parent)
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # AUFS metadata (.wh..wh.plnk and the like): nothing to apply
        victim_name = base[len(WHITEOUT_PREFIX):]
        if victim_name in ("", ".", ".."):
            raise HostileLayer(f"entry {rel!r}: whiteout of {victim_name!r}")
        victim = f"{parent}/{victim_name}" if parent else victim_name
        if victim in self.created:
            return  # a whiteout hides only the layers below (image-spec), not its own layer
        self.ensure_dir(parent)
        self.remove(victim)
        os.mknod(self.abs(victim), stat.S_IFCHR, os.makedev(0, 0))
        self.present[victim] = _WHITEOUT

    def finish(self) -> None:
        for rel in self.implied:
            found = self._lower_dir(rel) if self.present.get(rel) == _DIR else None
            if found is not None:
                self._inherit(rel, *found)
        for rel, (atime, mtime) in self.dir_times.items():
            if self.present.get(rel) == _DIR:
                os.utime(self.abs(rel), ns=(atime, mtime), follow_symlinks=False)


def apply_layer(blob: BinaryIO, root: str, lowers: list[str] | Callable[[], list[str]] | None = None, *,
                expected_diff_id: Digest | None = None, limits: ApplyLimits | None = None,
                threads: int = 1) -> ApplyResult:
    """Apply a (compressed or plain) layer stream to the empty upper dir `root`.

    `lowers` are the trees of the layers beneath, top first, or a function that returns them
    (called only if the layer needs to look beneath itself, which layers made by Docker seldom
    do: so layers can be unpacked in parallel). The diff ID (sha256 of the
    uncompressed stream, all of it) is checked against `expected_diff_id` at the end; on any
    error the upper dir is left half-written and the caller must discard the snapshot.
    """
    limits = limits or ApplyLimits()
    if os.listdir(root):
        raise InvalidArgument(f"layer target {root} is not empty")
    source, kind = compression.decompressed(blob, threads=threads if threads > 0 else 0)
    raw = _HashingRaw(source, limits.max_total_size + (64 << 20))
    stream = io.BufferedReader(raw, _READ_CHUNK)
    applier = _Applier(root, lowers if callable(lowers) else list(lowers or []), limits)
    try:
        for info, _source in iter_tar(stream, limits.max_header_size):
            applier.entry(info, stream)
        applier.finish()
        while stream.read(_READ_CHUNK):  # the diff ID covers the padding after the end blocks too
            pass
    except compression.CorruptLayer:
        raise
    except tarfile.ReadError as e:
        raise InvalidLayer(f"invalid layer: {e}") from e
    finally:
        if source is not blob:
            try:
                source.close()
            except Exception:  # noqa: BLE001 - closing a reader we abandoned half-way
                pass
    diff_id = raw.digest()
    if expected_diff_id is not None and diff_id != expected_diff_id:
        raise DigestMismatch(f"layer diff ID mismatch: expected {expected_diff_id}, the uncompressed layer has {diff_id}")
    return ApplyResult(diff_id, applier.size, applier.entries, kind)
