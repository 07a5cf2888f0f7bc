"""docker cp's file operations on a real directory tree standing in for a container root."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument, NotFound
from dockyard.services import fscopy

pytestmark = pytest.mark.root


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "hostname").write_text("inside\n")
    (r / "data" / "sub").mkdir(parents=True)
    (r / "data" / "a.txt").write_text("alpha")
    (r / "data" / "sub" / "b.txt").write_text("beta")
    os.link(r / "data" / "a.txt", r / "data" / "hard.txt")
    os.symlink("/", r / "toroot")
    os.symlink("../../../../../etc/hostname", r / "data" / "climb")
    os.symlink(str(tmp_path), r / "hostpath")
    fd = os.open(r, os.O_PATH | os.O_DIRECTORY)
    try:
        yield r, fd
    finally:
        os.close(fd)


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
            else:
                tar.addfile(ti)
    buf.seek(0)
    return buf


def _file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    return ti, data


def test_stat_modes_and_link_targets(root: tuple[Path, int]) -> None:
    _, fd = root
    st = fscopy.stat_path(fd, "/data")
    assert st.name == "data" and st.mode & (1 << 31) and st.link_target == ""
    st = fscopy.stat_path(fd, "/data/a.txt")
    assert st.size == 5 and st.mode == 0o644
    link = fscopy.stat_path(fd, "/toroot")
    assert link.mode & (1 << 27) and link.link_target == "/"
    assert fscopy.stat_path(fd, "/data/climb").link_target == "/etc/hostname"
    assert fscopy.stat_path(fd, "/").name == "/"
    with pytest.raises(NotFound, match="/nope/x"):
        fscopy.stat_path(fd, "/nope/x")


def test_read_directory_file_and_contents(root: tuple[Path, int]) -> None:
    _, fd = root
    out = io.BytesIO()
    fscopy.read_archive(fd, "/data", out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        names = {m.name: m for m in tar.getmembers()}
        assert {"data", "data/a.txt", "data/sub/b.txt", "data/climb"} <= set(names)
        assert names["data/climb"].issym() and names["data/climb"].linkname == "../../../../../etc/hostname"
        hard = [m for n, m in names.items() if n in ("data/a.txt", "data/hard.txt") and m.islnk()]
        assert len(hard) == 1  # the second name of the file is a hard link entry
    out = io.BytesIO()
    fscopy.read_archive(fd, "/data/.", out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert "a.txt" in tar.getnames() and "data" not in tar.getnames()


def test_read_through_symlinked_parent_stays_inside(root: tuple[Path, int], tmp_path: Path) -> None:
    r, fd = root
    (tmp_path / "secret").write_text("host secret")
    with pytest.raises(NotFound):
        fscopy.read_archive(fd, "/hostpath/secret", io.BytesIO())
    out = io.BytesIO()
    fscopy.read_archive(fd, "/toroot/etc/hostname", out)  # the link's target is the container's /
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        f = tar.extractfile("hostname")
        assert f is not None and f.read() == b"inside\n"


def test_write_files_dirs_links_owned_by_root(root: tuple[Path, int]) -> None:
    r, fd = root
    d = tarfile.TarInfo("new")
    d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o750, 1_000_000
    link = tarfile.TarInfo("new/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/hostname"
    f_ti, f_data = _file("new/f.txt", b"hello", 0o600)
    f_ti.uid = f_ti.gid = 1234
    count = fscopy.write_archive(fd, "/data", _tar((d, None), (f_ti, f_data), (link, None)))
    assert count == 3
    assert (r / "data" / "new" / "f.txt").read_bytes() == b"hello"
    st = (r / "data" / "new" / "f.txt").stat()
    assert (st.st_mode & 0o777, st.st_uid, st.st_gid) == (0o600, 0, 0)
    assert os.readlink(r / "data" / "new" / "link") == "/etc/hostname"
    assert (r / "data" / "new").stat().st_mtime == 1_000_000
    f_ti.name = "kept.txt"
    fscopy.write_archive(fd, "/data", _tar((f_ti, f_data)), fscopy.ExtractOptions(copy_uid_gid=True))
    assert (r / "data" / "kept.txt").stat().st_uid == 1234


def test_write_through_symlinks_lands_inside(root: tuple[Path, int], tmp_path: Path) -> None:
    r, fd = root
    fscopy.write_archive(fd, "/toroot", _tar(_file("planted")))  # "/toroot" is the container's /
    assert (r / "planted").exists()
    with pytest.raises(NotFound):
        fscopy.write_archive(fd, "/hostpath", _tar(_file("planted")))
    assert not (tmp_path / "planted").exists()
    # an entry whose parent is a symlink planted by the archive itself
    evil = tarfile.TarInfo("esc")
    evil.type, evil.linkname = tarfile.SYMTYPE, str(tmp_path)
    with pytest.raises(NotFound):  # the link's target does not exist inside the root
        fscopy.write_archive(fd, "/data", _tar((evil, None), _file("esc/through")))
    assert not (tmp_path / "through").exists()


def test_write_rejects_climbing_devices_and_type_clashes(root: tuple[Path, int], tmp_path: Path) -> None:
    r, fd = root
    with pytest.raises(InvalidArgument, match="climbs out"):
        fscopy.write_archive(fd, "/data", _tar(_file("../outside")))
    assert not (r / "outside").exists()
    dev = tarfile.TarInfo("dev")
    dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
    with pytest.raises(InvalidArgument, match="device"):
        fscopy.write_archive(fd, "/data", _tar((dev, None)))
    d = tarfile.TarInfo("a.txt")
    d.type = tarfile.DIRTYPE
    with pytest.raises(InvalidArgument, match="cannot overwrite"):
        fscopy.write_archive(fd, "/data", _tar((d, None)), fscopy.ExtractOptions(no_overwrite_dir_non_dir=True))
    with pytest.raises(InvalidArgument, match="not a directory"):
        fscopy.write_archive(fd, "/data/a.txt", _tar(_file("x")))
    with pytest.raises(InvalidArgument, match="not a valid tar"):
        fscopy.write_archive(fd, "/data", io.BytesIO(b"not a tar at all" * 64))


def test_user_lookup_stays_inside_the_root(tmp_path: Path) -> None:
    from dockyard.services.userlookup import resolve_user

    host_etc = tmp_path / "host-etc"
    host_etc.mkdir()
    (host_etc / "passwd").write_text("hostonly:x:4242:4242::/:/bin/sh\n")
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    os.symlink(str(host_etc / "passwd"), root / "etc" / "passwd")
    with pytest.raises(InvalidArgument, match="unable to find user hostonly"):
        resolve_user(str(root), "hostonly")
    os.unlink(root / "etc" / "passwd")
    os.mkfifo(root / "etc" / "passwd")
    assert resolve_user(str(root), "0") == {"uid": 0, "gid": 0}  # a FIFO is not read (nor waited on)
