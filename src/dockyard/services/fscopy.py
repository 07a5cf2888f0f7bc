"""`docker cp`: stat, read (as a tar) and write (from a tar) paths inside a container's root.

Everything is resolved relative to a descriptor of the container's root with openat2(2)
RESOLVE_IN_ROOT, so `..` and symlinks (absolute or relative) are resolved as the container
itself would resolve them and can never reach the host. Final components are never followed
(a symlink is copied as a symlink) and are created with O_NOFOLLOW/O_EXCL after the parent was
opened safely; a tar entry that is a device node is refused.

The root descriptor is `/proc/<pid>/root` for a running container (so bind mounts and volumes
are seen as the container sees them) or the container's mounted snapshot when it is stopped.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.errors import InvalidArgument, NotFound, SystemFailure
from dockyard.linux import libc

_RESOLVE = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS

# Go's os.FileMode type bits (what `X-Docker-Container-Path-Stat` carries)
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20


@dataclass(frozen=True)
class PathStat:
    name: str
    size: int
    mode: int          # Go os.FileMode
    mtime: str         # RFC 3339
    link_target: str   # for a symlink: the absolute path it resolves to inside the container

    def to_docker(self) -> dict[str, object]:
        return {"name": self.name, "size": self.size, "mode": self.mode, "mtime": self.mtime,
                "linkTarget": self.link_target}


def go_mode(st: os.stat_result) -> int:
    mode = stat.S_IMODE(st.st_mode) & 0o777
    if st.st_mode & stat.S_ISUID:
        mode |= _GO_SETUID
    if st.st_mode & stat.S_ISGID:
        mode |= _GO_SETGID
    if st.st_mode & stat.S_ISVTX:
        mode |= _GO_STICKY
    kind = stat.S_IFMT(st.st_mode)
    mode |= {stat.S_IFDIR: _GO_DIR, stat.S_IFLNK: _GO_SYMLINK, stat.S_IFIFO: _GO_PIPE, stat.S_IFSOCK: _GO_SOCKET,
             stat.S_IFBLK: _GO_DEVICE, stat.S_IFCHR: _GO_DEVICE | _GO_CHARDEV}.get(kind, 0)
    return mode


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


def _clean(path: str) -> str:
    if not path:
        raise InvalidArgument("no path given")
    if "\x00" in path:
        raise InvalidArgument("invalid path: NUL byte")
    return "/" + posixpath.normpath("/" + path).lstrip("/")  # normpath keeps a leading "//"


def _open_in_root(root: int, path: str, flags: int = os.O_PATH | os.O_DIRECTORY, shown: str = "") -> int:
    try:
        return libc.openat2(root, path, flags, _RESOLVE)
    except SystemFailure as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise NotFound(f"Could not find the file {shown or path} in container") from None
        raise


@contextmanager
def _parent_of(root: int, path: str) -> Iterator[tuple[int, str]]:
    """(descriptor of the parent directory, final component) of a cleaned absolute path."""
    parent, name = posixpath.split(path)
    fd = _open_in_root(root, parent or "/", shown=path)
    try:
        yield fd, name
    finally:
        os.close(fd)


def _resolve_link(root: int, path: str) -> str:
    """Where a symlink at `path` points, resolved inside the root (best effort, like Docker)."""
    seen = 0
    current = path
    while seen < 40:
        parent, name = posixpath.split(current)
        with _parent_of(root, current) as (dfd, _):
            try:
                target = os.readlink(name, dir_fd=dfd)
            except OSError:
                return current
        current = posixpath.normpath(target if target.startswith("/") else posixpath.join(parent, target))
        seen += 1
    return current


def stat_path(root: int, path: str) -> PathStat:
    """`HEAD /containers/{id}/archive`: what `path` is (the final symlink is not followed)."""
    clean = _clean(path)
    if clean == "/":
        st = os.fstat(root)
        return PathStat("/", st.st_size, go_mode(st), _rfc3339(st.st_mtime), "")
    with _parent_of(root, clean) as (dfd, name):
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"Could not find the file {path} in container") from None
    link = _resolve_link(root, clean) if stat.S_ISLNK(st.st_mode) else ""
    return PathStat(name, st.st_size, go_mode(st), _rfc3339(st.st_mtime), link)


def is_directory(root: int, path: str) -> bool:
    """Whether `path` (symlinks followed inside the root) is a directory."""
    try:
        fd = _open_in_root(root, _clean(path), os.O_PATH)
    except NotFound:
        return False
    try:
        return stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def make_dirs(root: int, path: str, uid: int = 0, gid: int = 0, mode: int = 0o755) -> list[str]:
    """`mkdir -p` inside the root: the missing directories of `path`, owned by uid:gid; the ones made."""
    made: list[str] = []
    current = "/"
    for part in [p for p in _clean(path).split("/") if p]:
        current = posixpath.join(current, part)
        with _parent_of(root, current) as (dfd, name):
            try:
                os.mkdir(name, mode, dir_fd=dfd)
            except FileExistsError:
                continue
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dfd)
            try:
                os.chown(f"/proc/self/fd/{fd}", uid, gid)
                os.chmod(f"/proc/self/fd/{fd}", mode)
            finally:
                os.close(fd)
            made.append(current)
    if not is_directory(root, path):
        raise InvalidArgument(f"{path} exists and is not a directory")
    return made


def _tarinfo(arcname: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(arcname)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    ti.uname = ti.gname = ""
    return ti


class _TarWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self.links: dict[tuple[int, int], str] = {}

    def add(self, dfd: int, name: str, arcname: str) -> None:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        ti = _tarinfo(arcname, st)
        mode = st.st_mode
        if stat.S_ISREG(mode) and st.st_nlink > 1:
            first = self.links.get((st.st_dev, st.st_ino))
            if first is not None:
                ti.type, ti.linkname = tarfile.LNKTYPE, first
                self.tar.addfile(ti)
                return
            self.links[(st.st_dev, st.st_ino)] = arcname
        if stat.S_ISREG(mode):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            with os.fdopen(fd, "rb") as f:
                ti.size = os.fstat(fd).st_size
                self.tar.addfile(ti, f)
        elif stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
            self.tar.addfile(ti)
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
            try:
                for child in sorted(os.listdir(fd)):
                    self.add(fd, child, f"{arcname}/{child}" if arcname != "." else child)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dfd)
            self.tar.addfile(ti)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
            self.tar.addfile(ti)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tar.addfile(ti)
        # sockets are skipped, as tar does

    def close(self) -> None:
        self.tar.close()


def read_archive(root: int, path: str, out: BinaryIO) -> None:
    """`GET /containers/{id}/archive`: a tar of `path`, its entries named from its base name
    (a directory's contents follow it); a path ending in `/.` names the contents themselves."""
    clean = _clean(path)
    contents_only = path.endswith("/.") or path == "."
    writer = _TarWriter(out)
    try:
        if clean == "/":
            dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root)
            try:
                for child in sorted(os.listdir(dfd)):
                    writer.add(dfd, child, child)
            finally:
                os.close(dfd)
        else:
            with _parent_of(root, clean) as (dfd, name):
                try:
                    os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    raise NotFound(f"Could not find the file {path} in container") from None
                writer.add(dfd, name, "." if contents_only else name)
    finally:
        writer.close()


@dataclass(frozen=True)
class ExtractOptions:
    no_overwrite_dir_non_dir: bool = False
    copy_uid_gid: bool = False      # keep the tar's owners; otherwise everything belongs to root
    create_parents: bool = False    # make missing parent directories (an archive may leave them out)
    max_entries: int = 1_000_000


def write_archive(root: int, path: str, source: BinaryIO, options: ExtractOptions = ExtractOptions()) -> int:
    """`PUT /containers/{id}/archive`: extract a tar into the directory `path`; the number of entries."""
    dest = _clean(path)
    dest_fd = _open_in_root(root, dest, os.O_PATH)
    try:
        if not stat.S_ISDIR(os.fstat(dest_fd).st_mode):
            raise InvalidArgument(f"extraction point is not a directory: {path}")
    finally:
        os.close(dest_fd)
    count = 0
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    try:
        tar = tarfile.open(fileobj=source, mode="r|*")  # noqa: SIM115
    except tarfile.TarError as e:
        raise InvalidArgument(f"the archive is not a valid tar: {e}") from None
    with tar:
        try:
            for member in tar:
                count += 1
                if count > options.max_entries:
                    raise InvalidArgument(f"the archive has more than {options.max_entries} entries")
                target = _clean(posixpath.join(dest, member.name.lstrip("/")))
                if target == dest:
                    continue  # "." or "./": the extraction point itself
                if target == "/" or not target.startswith(dest.rstrip("/") + "/"):
                    raise InvalidArgument(f"archive entry {member.name!r} climbs out of {path}")
                if options.create_parents:
                    make_dirs(root, posixpath.dirname(target))
                _extract(root, tar, member, target, options)
                if member.isdir():
                    dirs.append((target, member))
        except tarfile.TarError as e:
            raise InvalidArgument(f"the archive is not a valid tar: {e}") from None
    for target, member in reversed(dirs):  # directory times last: extracting into them changed them
        with _parent_of(root, target) as (dfd, name):
            try:
                os.utime(name, (member.mtime, member.mtime), dir_fd=dfd, follow_symlinks=False)
            except OSError:
                pass
    return count


def _extract(root: int, tar: tarfile.TarFile, member: tarfile.TarInfo, target: str, options: ExtractOptions) -> None:
    with _parent_of(root, target) as (dfd, name):
        try:
            existing: os.stat_result | None = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None:
            is_dir = stat.S_ISDIR(existing.st_mode)
            if member.isdir() and is_dir:
                pass
            elif is_dir or member.isdir():
                if options.no_overwrite_dir_non_dir:
                    what = "directory" if is_dir else "non-directory"
                    raise InvalidArgument(f"cannot overwrite {what} {target} with "
                                          f"{'directory' if member.isdir() else 'non-directory'}")
                if is_dir:
                    _remove_tree(dfd, name)
                else:
                    os.unlink(name, dir_fd=dfd)
                existing = None
            else:
                os.unlink(name, dir_fd=dfd)
                existing = None
        if member.isdir():
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=dfd)
        elif member.isreg():
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            with os.fdopen(fd, "wb") as out:
                src = tar.extractfile(member)
                if src is not None:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
        elif member.issym():
            os.symlink(member.linkname, name, dir_fd=dfd)
        elif member.islnk():
            link = posixpath.normpath("/" + member.linkname.lstrip("/"))
            with _parent_of(root, link) as (ldfd, lname):
                try:
                    os.link(lname, name, src_dir_fd=ldfd, dst_dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    raise InvalidArgument(f"archive entry {member.name!r}: hard link target {member.linkname!r} "
                                          "does not exist") from None
        elif member.isfifo():
            os.mkfifo(name, 0o600, dir_fd=dfd)
        else:
            raise InvalidArgument(f"archive entry {member.name!r}: device nodes and other special files "
                                  "cannot be copied into a container")
        uid, gid = (member.uid, member.gid) if options.copy_uid_gid else (0, 0)
        if member.issym():
            os.chown(name, uid, gid, dir_fd=dfd, follow_symlinks=False)
            return
        # through a descriptor of what was just made: if the container swapped it for a symlink
        # meanwhile, the metadata calls act on that symlink's own inode, never on its target
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                return
            handle = f"/proc/self/fd/{fd}"
            os.chown(handle, uid, gid)
            os.chmod(handle, member.mode & 0o7777)
            os.utime(handle, (member.mtime, member.mtime))
        finally:
            os.close(fd)


def _remove_tree(dfd: int, name: str) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    try:
        for child in os.listdir(fd):
            st = os.stat(child, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                _remove_tree(fd, child)
            else:
                os.unlink(child, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dfd)
