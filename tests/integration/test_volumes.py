"""The volume service on a real kernel: records, DriverOpts mounts (tmpfs, bind) with their
reference counts, copy-up from a root filesystem, users, prune, a restart of the service."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import AlreadyExists, InvalidArgument, NotFound, NotImplementedFeature, WrongState
from dockyard.services.volumes import ANONYMOUS_LABEL, VolumeService, is_mountpoint, parse_driver_opts

pytestmark = pytest.mark.root

CID1, CID2 = "a" * 64, "b" * 64


@pytest.fixture
def service(tmp_path: Path) -> Iterator[VolumeService]:
    if os.geteuid() != 0:
        pytest.skip("volumes with mounts need root")
    s = VolumeService(str(tmp_path / "data"))
    yield s
    s.close()
    for name in list(s.volumes):
        s._users.pop(name, None)
        s.remove(name)


def _is_mount(path: str) -> bool:
    return is_mountpoint(path)


def test_create_inspect_list_remove(service: VolumeService, tmp_path: Path) -> None:
    v = service.create("data1", labels={"team": "blue"})
    assert v.name == "data1" and v.driver == "local" and v.labels == {"team": "blue"} and v.options == {}
    assert v.created_at.endswith("Z")
    path = service.mountpoint("data1")
    assert path == str(tmp_path / "data" / "volumes" / "data1" / "_data") and os.path.isdir(path)
    record = json.loads((tmp_path / "data" / "volumes" / "data1" / "volume.json").read_text())
    assert record["name"] == "data1" and record["labels"] == {"team": "blue"}
    assert service.create("data1") is v  # idempotent, like dockerd
    anon = service.create()
    assert len(anon.name) == 64 and int(anon.name, 16) >= 0 and anon.anonymous and ANONYMOUS_LABEL in anon.labels
    assert [x.name for x in service.list()] == sorted(["data1", anon.name])
    service.remove("data1")
    assert not os.path.exists(tmp_path / "data" / "volumes" / "data1")
    with pytest.raises(NotFound, match="get data1: no such volume"):
        service.get("data1")
    with pytest.raises(NotFound):
        service.remove("data1")
    service.remove("data1", force=True)  # force: a missing volume is no error


def test_validation(service: VolumeService) -> None:
    with pytest.raises(InvalidArgument, match="invalid characters"):
        service.create("a/b")
    with pytest.raises(InvalidArgument, match="invalid characters"):
        service.create("x")
    with pytest.raises(NotFound, match='plugin "nfs-plugin" not found'):
        service.create("v", driver="nfs-plugin")
    with pytest.raises(InvalidArgument, match='invalid option: "colour"'):
        service.create("v", driver_opts={"colour": "red"})
    with pytest.raises(InvalidArgument, match='missing required option: "device"'):
        service.create("v", driver_opts={"type": "tmpfs"})
    with pytest.raises(InvalidArgument, match='missing required option: "type"'):
        service.create("v", driver_opts={"device": "tmpfs"})
    with pytest.raises(InvalidArgument, match="o=bind"):
        service.create("v", driver_opts={"type": "none", "device": "/tmp", "o": "ro"})
    with pytest.raises(InvalidArgument, match="does not exist"):
        service.create("v", driver_opts={"type": "none", "device": "/nonexistent/x", "o": "bind"})
    with pytest.raises(NotImplementedFeature, match="size"):
        service.create("v", driver_opts={"size": "10m"})
    assert service.list() == []
    opts = parse_driver_opts({"type": "tmpfs", "device": "tmpfs", "o": "size=64m,uid=1000,noexec"})
    assert opts is not None and opts.fstype == "tmpfs" and opts.data == "size=64m,uid=1000" and opts.flags == 0x8
    service.create("v1")
    with pytest.raises(AlreadyExists):
        service.volumes["v1"].driver = "other"
        service.create("v1")
    service.volumes["v1"].driver = "local"


def test_tmpfs_volume_is_mounted_while_used(service: VolumeService) -> None:
    service.create("scratch", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=8m,mode=0750"})
    path = service.mountpoint("scratch")
    assert not _is_mount(path)
    assert service.mount("scratch", CID1) == path
    assert _is_mount(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o750
    assert os.statvfs(path).f_blocks * os.statvfs(path).f_frsize == 8 << 20
    Path(path, "f").write_text("x")
    service.mount("scratch", CID2)
    service.mount("scratch", CID2)  # idempotent per container
    service.unmount("scratch", CID1)
    assert _is_mount(path) and Path(path, "f").read_text() == "x"
    with pytest.raises(WrongState, match=f"remove scratch: volume is in use - \\[{CID2}\\]"):
        service.remove("scratch")
    service.unmount_container(CID2)
    assert not _is_mount(path) and os.listdir(path) == []  # tmpfs content goes with the mount
    service.mount("scratch", CID1)
    service.close()  # daemon shutdown unmounts everything
    assert not _is_mount(path)
    service.remove("scratch")


def test_bind_volume(service: VolumeService, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "hello").write_text("hi")
    service.create("bv", driver_opts={"type": "none", "device": str(host), "o": "bind,ro"})
    path = service.mountpoint("bv")
    service.mount("bv", CID1)
    try:
        assert Path(path, "hello").read_text() == "hi"
        with pytest.raises(OSError):
            Path(path, "new").write_text("no")  # o=ro
    finally:
        service.release(CID1)
    assert not _is_mount(path)


def test_users_block_removal_and_prune(service: VolumeService) -> None:
    service.create("named")
    anon = service.create(anonymous=True)
    spare = service.create(anonymous=True)
    service.claim("named", CID1)
    service.claim(anon.name, CID1)
    with pytest.raises(WrongState, match=f"volume is in use - \\[{CID1}\\]"):
        service.remove("named", force=True)  # force does not override in-use
    removed, _ = service.prune(lambda v: not v.anonymous)
    assert removed == [spare.name]
    assert sorted(service.release(CID1)) == sorted(["named", anon.name])
    assert service.users("named") == []
    removed, _ = service.prune()
    assert sorted(removed) == sorted(["named", anon.name])
    with pytest.raises(NotFound):
        service.claim("gone", CID1)


def test_copy_up(service: VolumeService, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    etc = rootfs / "etc"
    (etc / "sub").mkdir(parents=True)
    os.chmod(etc, 0o751)
    os.chown(etc, 12, 34)
    (etc / "passwd").write_text("root:x:0:0\n")
    os.chmod(etc / "passwd", 0o640)
    os.chown(etc / "passwd", 1000, 1001)
    (etc / "setuid").write_text("")
    os.chmod(etc / "setuid", 0o4755)
    os.symlink("/etc/passwd", etc / "link")  # absolute: copied as is, never followed
    os.mkfifo(etc / "fifo")
    os.setxattr(etc / "passwd", "user.colour", b"blue")
    os.chmod(etc / "sub", 0o700)
    (etc / "sub" / "deep").write_text("deep")
    os.symlink("/etc", rootfs / "linked")  # a symlinked path resolves inside the root

    service.create("cfg")
    assert service.populate("cfg", str(rootfs), "/linked")
    data = Path(service.mountpoint("cfg"))
    st = os.stat(data)
    assert stat.S_IMODE(st.st_mode) == 0o751 and (st.st_uid, st.st_gid) == (12, 34)
    assert (data / "passwd").read_text() == "root:x:0:0\n"
    pst = os.stat(data / "passwd")
    assert stat.S_IMODE(pst.st_mode) == 0o640 and (pst.st_uid, pst.st_gid) == (1000, 1001)
    assert stat.S_IMODE(os.stat(data / "setuid").st_mode) == 0o4755
    assert os.readlink(data / "link") == "/etc/passwd"
    assert stat.S_ISFIFO(os.lstat(data / "fifo").st_mode)
    assert os.getxattr(data / "passwd", "user.colour") == b"blue"
    assert stat.S_IMODE(os.stat(data / "sub").st_mode) == 0o700 and (data / "sub" / "deep").read_text() == "deep"
    (data / "sub" / "deep").write_text("changed")
    assert not service.populate("cfg", str(rootfs), "/etc")  # not empty: never copied again
    assert (etc / "sub" / "deep").read_text() == "deep"
    service.create("none")
    assert not service.populate("none", str(rootfs), "/missing")
    assert not service.populate("none", str(rootfs), "/etc/passwd")  # a file: nothing to copy
    assert os.listdir(service.mountpoint("none")) == []


def test_reload_after_restart(service: VolumeService, tmp_path: Path) -> None:
    service.create("kept", labels={"a": "b"}, driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    service.mount("kept", CID1)
    path = service.mountpoint("kept")
    # a daemon that died: its mount is left behind and the new service cleans it up
    again = VolumeService(str(tmp_path / "data"))
    assert not _is_mount(path)
    assert again.get("kept").labels == {"a": "b"} and again.get("kept").options["type"] == "tmpfs"
    os.makedirs(tmp_path / "data" / "volumes" / "half" / "_data")  # a create that died before its record
    third = VolumeService(str(tmp_path / "data"))
    assert "half" not in third.volumes and not os.path.exists(tmp_path / "data" / "volumes" / "half")
    service._active.clear()
