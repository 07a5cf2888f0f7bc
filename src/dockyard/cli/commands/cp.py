"""`dockyard cp`: copy between a container and the host through the archive endpoints.

    dockyard cp CONTAINER:SRC HOSTDEST|-        dockyard cp HOSTSRC|- CONTAINER:DEST

Docker's rules: a directory source copies the directory itself into an existing directory
destination, or becomes the destination when that does not exist; a file source lands in an
existing directory under its own name, or is written as the destination. On the host side the
archive is extracted without ever following a symlink out of the destination, and device nodes
are skipped.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import stat
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from typing import Any

from dockyard.cli.args import F, Spec, UsageError
from dockyard.cli.client import CliError, Client, DaemonError, q, read_chunks

CP_SPEC = Spec(F("-a", "--archive"), F("-L", "--follow-link"), F("-q", "--quiet"))


def _split(arg: str) -> tuple[str | None, str]:
    """("container", "path") for CONTAINER:PATH, (None, path) for a host path."""
    if arg == "-" or arg.startswith(("/", ".")):
        return None, arg
    name, sep, path = arg.partition(":")
    if sep and name and "/" not in name:
        return name, path or "/"
    return None, arg


def _stat(client: Client, container: str, path: str) -> dict[str, Any] | None:
    try:
        resp = client.raw("HEAD", f"/containers/{q(container)}/archive?path={q(path)}")
    except DaemonError as e:
        if e.status == 404:
            return None
        raise
    resp.read()
    header = resp.getheader("X-Docker-Container-Path-Stat") or ""
    try:
        found: dict[str, Any] = json.loads(base64.b64decode(header))
    except ValueError:
        return {}
    return found


def cmd_cp(client: Client, argv: list[str]) -> int:
    p = CP_SPEC.parse(argv)
    if len(p.positionals) != 2:
        raise UsageError('"cp" requires exactly 2 arguments.')
    (src_c, src), (dst_c, dst) = _split(p.positionals[0]), _split(p.positionals[1])
    if (src_c is None) == (dst_c is None):
        raise CliError("copying between containers, or between host paths, is not supported: "
                       "one side must be CONTAINER:PATH")
    if src_c is not None:
        return _from_container(client, src_c, src, dst, bool(p["follow_link"]))
    assert dst_c is not None
    return _to_container(client, src, dst_c, dst, bool(p["archive"]), bool(p["follow_link"]))


# --- container -> host --------------------------------------------------------------------

def _from_container(client: Client, container: str, src: str, dst: str, follow: bool) -> int:
    info = _stat(client, container, src)
    if info is None:
        raise CliError(f"Error response from daemon: Could not find the file {src} in container {container}", 1)
    if follow and info.get("linkTarget"):
        src = info["linkTarget"]
    resp = client.raw("GET", f"/containers/{q(container)}/archive?path={q(src)}")
    if dst == "-":
        while chunk := resp.read(1 << 20):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return 0
    base = posixpath.basename(src.rstrip("/")) or "/"
    if os.path.isdir(dst):
        target_dir, rename = dst, None                    # into the existing directory
    else:
        parent = os.path.dirname(os.path.abspath(dst))
        if not os.path.isdir(parent):
            raise CliError(f"destination directory {parent} does not exist", 1)
        if dst.endswith("/"):
            raise CliError(f"destination directory {dst} does not exist", 1)
        target_dir, rename = parent, os.path.basename(os.path.abspath(dst))
    with tarfile.open(fileobj=resp, mode="r|*") as tar:
        _extract(tar, target_dir, base, rename)
    return 0


def _extract(tar: tarfile.TarFile, target_dir: str, base: str, rename: str | None) -> None:
    root = os.path.realpath(target_dir)
    for member in tar:
        name = member.name.lstrip("/")
        parts = [x for x in name.split("/") if x not in ("", ".")]
        if not parts or ".." in parts:
            continue
        if rename is not None and parts[0] == base:
            parts[0] = rename
        path = os.path.join(root, *parts)
        parent = os.path.realpath(os.path.dirname(path))
        if parent != root and not parent.startswith(root + os.sep):
            raise CliError(f"archive entry {member.name!r} would be written outside {target_dir}", 1)
        if member.isdev() or not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            continue
        if os.path.lexists(path) and not (member.isdir() and os.path.isdir(path) and not os.path.islink(path)):
            if os.path.isdir(path) and not os.path.islink(path):
                raise CliError(f"cannot overwrite directory {path} with non-directory", 1)
            os.unlink(path)
        if member.isdir():
            os.makedirs(path, exist_ok=True)
        elif member.issym():
            os.symlink(member.linkname, path)
            continue
        elif member.islnk():
            link_parts = [x for x in member.linkname.lstrip("/").split("/") if x not in ("", ".")]
            if rename is not None and link_parts and link_parts[0] == base:
                link_parts[0] = rename
            source = os.path.join(root, *link_parts)
            if ".." in link_parts or not os.path.realpath(source).startswith(root + os.sep):
                continue
            os.link(source, path)
            continue
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                data = tar.extractfile(member)
                if data is not None:
                    while chunk := data.read(1 << 20):
                        out.write(chunk)
        os.chmod(path, member.mode & 0o7777)
        os.utime(path, (member.mtime, member.mtime))
        if os.geteuid() == 0:
            try:
                os.chown(path, member.uid, member.gid)
            except OSError:
                pass


# --- host -> container --------------------------------------------------------------------

def _to_container(client: Client, src: str, container: str, dst: str, archive: bool, follow: bool) -> int:
    if src == "-":
        return _put(client, container, dst, read_chunks(sys.stdin.buffer))
    if not os.path.lexists(src):
        raise CliError(f"lstat {src}: no such file or directory", 1)
    if follow and os.path.islink(src):
        src = os.path.realpath(src)
    info = _stat(client, container, dst)
    dst_is_dir = info is not None and bool(int(info.get("mode", 0)) & (1 << 31))
    if dst_is_dir:
        extract_at, arcname = dst, os.path.basename(os.path.abspath(src))
    else:
        if dst.endswith("/"):
            raise CliError(f"Error response from daemon: Could not find the file {dst} in container {container}", 1)
        if os.path.isdir(src) and info is not None:
            raise CliError(f"cannot copy directory to existing file {dst}", 1)
        extract_at, arcname = posixpath.dirname(dst.rstrip("/")) or "/", posixpath.basename(dst.rstrip("/"))
    with tempfile.TemporaryFile() as spool:
        with tarfile.open(fileobj=spool, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for full, name in _walk(src, arcname):
                ti = tar.gettarinfo(full, arcname=name)
                if not archive:
                    ti.uid = ti.gid = 0
                    ti.uname = ti.gname = ""
                if ti.isreg():
                    with open(full, "rb") as handle:
                        tar.addfile(ti, handle)
                elif ti.isdir() or ti.issym() or ti.islnk():
                    tar.addfile(ti)
        spool.seek(0)
        return _put(client, container, extract_at, read_chunks(spool), copy_uid_gid=archive)


def _walk(src: str, arcname: str) -> Iterator[tuple[str, str]]:
    yield src, arcname
    if stat.S_ISDIR(os.lstat(src).st_mode):
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            rel = os.path.relpath(dirpath, src)
            for name in sorted(dirnames) + sorted(filenames):
                yield os.path.join(dirpath, name), posixpath.normpath(posixpath.join(arcname, rel, name))


def _put(client: Client, container: str, path: str, chunks: Iterator[bytes], copy_uid_gid: bool = False) -> int:
    query = f"path={q(path)}&noOverwriteDirNonDir=true" + ("&copyUIDGID=true" if copy_uid_gid else "")
    resp = client.stream_upload(f"/containers/{q(container)}/archive?{query}", chunks, "application/x-tar", "PUT")
    resp.read()
    return 0
