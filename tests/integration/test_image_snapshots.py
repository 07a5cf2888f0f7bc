"""Layers applied into overlay snapshots, seen through real overlayfs mounts; diffs and changes."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from dockyard.errors import WrongState
from dockyard.snapshot import OverlaySnapshotter, apply_layer, changes, mounted, write_diff
from dockyard.snapshot.compression import GZIP, ZSTD, compressor
from dockyard.snapshot.overlay import OWNER_LABEL
from hostile_tars import _info, d, dev, f, hard, sym, tar

pytestmark = pytest.mark.root


def _layer1() -> bytes:
    xattr = _info("etc/xattr", pax_headers={"SCHILY.xattr.user.color": "blue"})
    return tar(
        d("etc"), f("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"), f("etc/setuid", b"s", mode=0o4755),
        d("home", mode=0o700, uid=1000, gid=1000), f("home/owned", b"o", uid=1000, gid=2000, mode=0o600),
        (xattr, b"x"), sym("bin", "usr/bin"), d("usr"), d("usr/bin"), f("usr/bin/tool", b"#!/bin/sh\n", mode=0o755),
        hard("usr/bin/tool2", "usr/bin/tool"), (_info("pipe", tarfile.FIFOTYPE), None), d("dev"), dev("dev/null", 1, 3),
        d("gone"), f("gone/a"), d("opaque"), f("opaque/old"), f("replace-me", b"file"), f("shared", b"lower"),
    )


def _layer2() -> bytes:
    return tar(
        f(".wh.gone", b""), f("opaque/.wh..wh..opq", b""), f("opaque/new"), d("replace-me"), f("replace-me/inner"),
        hard("shared-link", "shared"), f("home/added", b"a"), f("etc/.wh.setuid", b""),
    )


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


@contextmanager
def _view(snaps: OverlaySnapshotter, parent: str, target: str) -> Iterator[str]:
    snaps.view("view", parent)
    try:
        with mounted(snaps.mounts("view"), target):
            yield target
    finally:
        snaps.remove("view")


def _stack(snaps: OverlaySnapshotter, layers: list[bytes]) -> str:
    parent = None
    for i, layer in enumerate(layers):
        snaps.prepare(f"k{i}", parent)
        apply_layer(io.BytesIO(layer), snaps.upper_dir(f"k{i}"), snaps.lower_dirs(f"k{i}"))
        snaps.commit(f"l{i}", f"k{i}")
        parent = f"l{i}"
    assert parent is not None
    return parent


def test_layers_through_overlay(tmp_path) -> None:
    snaps = OverlaySnapshotter(str(tmp_path / "s"))
    top = _stack(snaps, [_layer1(), _layer2()])
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    with _view(snaps, top, mnt) as root:
        p = lambda rel: os.path.join(root, rel)  # noqa: E731
        assert _read(p("etc/passwd")).startswith("root:")
        assert not os.path.exists(p("etc/setuid"))                     # whiteout
        assert not os.path.exists(p("gone"))                           # whited-out directory
        assert sorted(os.listdir(p("opaque"))) == ["new"]              # opaque directory
        assert os.path.isdir(p("replace-me")) and os.listdir(p("replace-me")) == ["inner"]
        st = os.stat(p("home"))
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o700)  # parent copied up with its metadata
        st = os.stat(p("home/owned"))
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 2000, 0o600)
        assert os.readlink(p("bin")) == "usr/bin"
        assert os.stat(p("usr/bin/tool")).st_ino == os.stat(p("usr/bin/tool2")).st_ino
        assert os.stat(p("usr/bin/tool")).st_nlink == 2
        assert _read(p("shared-link")) == "lower"                # hard link to a lower file: copied up
        assert os.getxattr(p("etc/xattr"), "user.color") == b"blue"
        assert stat.S_ISFIFO(os.lstat(p("pipe")).st_mode)
        st = os.lstat(p("dev/null"))
        assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
        assert os.lstat(p("etc/passwd")).st_mtime == 1_600_000_000
    snaps.close()


def test_setuid_mode_survives(tmp_path) -> None:
    snaps = OverlaySnapshotter(str(tmp_path / "s"))
    top = _stack(snaps, [_layer1()])
    st = os.stat(os.path.join(snaps.fs_dir(snaps.stat(top)), "etc/setuid"))
    assert stat.S_IMODE(st.st_mode) == 0o4755
    snaps.close()


@pytest.mark.parametrize("kind", [GZIP, ZSTD, None])
def test_compressions_give_the_same_diff_id(tmp_path, kind) -> None:
    plain = _layer1()
    out = io.BytesIO()
    w = compressor(out, kind)
    w.write(plain)
    w.close()
    up = tmp_path / "up"
    up.mkdir()
    result = apply_layer(io.BytesIO(out.getvalue()), str(up))
    from dockyard.types.digest import digest_bytes

    assert result.diff_id == digest_bytes(plain) and result.compression == kind


def test_diff_roundtrip_and_changes(tmp_path) -> None:
    snaps = OverlaySnapshotter(str(tmp_path / "s"))
    top = _stack(snaps, [_layer1()])
    snaps.prepare("ctr", top)
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    with mounted(snaps.mounts("ctr"), mnt) as root:
        with open(os.path.join(root, "etc/passwd"), "a") as fh:
            fh.write("user:x:1000:1000::/home:/bin/sh\n")
        with open(os.path.join(root, "new-file"), "w") as fh:
            fh.write("new")
        os.unlink(os.path.join(root, "replace-me"))
        os.unlink(os.path.join(root, "gone/a"))
        os.rmdir(os.path.join(root, "gone"))
        os.unlink(os.path.join(root, "opaque/old"))
        os.rmdir(os.path.join(root, "opaque"))
        os.mkdir(os.path.join(root, "opaque"))   # a new directory where one was deleted: opaque
        with open(os.path.join(root, "opaque/fresh"), "w") as fh:
            fh.write("fresh")
        os.link(os.path.join(root, "new-file"), os.path.join(root, "new-link"))
        os.setxattr(os.path.join(root, "new-file"), "user.k", b"v")
        expected = _snapshot_tree(root)
    got = {str(c) for c in changes(snaps.upper_dir("ctr"), snaps.lower_dirs("ctr"))}
    assert {"C /etc/passwd", "A /new-file", "A /new-link", "D /replace-me", "D /gone", "C /opaque", "A /opaque/fresh"} <= got
    buf = io.BytesIO()
    write_diff(snaps.upper_dir("ctr"), buf)
    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert ".wh.gone" in names and ".wh.replace-me" in names and "opaque/.wh..wh..opq" in names
    # the diff applied on the same parent gives the same tree as the container had
    snaps.prepare("again", top)
    apply_layer(io.BytesIO(buf.getvalue()), snaps.upper_dir("again"), snaps.lower_dirs("again"))
    snaps.commit("committed-diff", "again")
    with _view(snaps, "committed-diff", mnt) as root:
        assert _snapshot_tree(root) == expected
    snaps.remove("ctr")
    snaps.close()


def _snapshot_tree(root: str) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            data: bytes | str | None = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    data = fh.read()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(path)
            xattrs = tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in os.listxattr(path, follow_symlinks=False)
                                  if n.startswith("user.")))
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_uid, st.st_gid, data, st.st_nlink if stat.S_ISREG(st.st_mode) else 0, xattrs)
    return out


def test_snapshotter_rules_and_recovery(tmp_path) -> None:
    snaps = OverlaySnapshotter(str(tmp_path / "s"))
    top = _stack(snaps, [tar(f("a"))])
    snaps.prepare("child", top)
    with pytest.raises(WrongState):
        snaps.remove(top)
    with pytest.raises(WrongState):
        snaps.prepare("x", "child")     # only committed snapshots can be parents
    assert snaps.mounts("child")[0].type == "bind" or snaps.mounts("child")[0].type == "overlay"
    # an extraction abandoned by a dead process, and a directory without a row
    snaps.prepare("extract-dead", top, labels={OWNER_LABEL: "999999999.1"})
    os.makedirs(str(tmp_path / "s/snapshots/999/fs"))
    removed = snaps.recover()
    assert "extract-dead" in removed and "999" in removed
    assert {i.key for i in snaps.walk()} == {top, "child"}
    snaps.remove("child")
    snaps.remove(top)
    assert os.listdir(str(tmp_path / "s/snapshots")) == []
    snaps.close()


def test_implied_parents_take_their_metadata_from_below_when_lowers_come_later(tmp_path) -> None:
    """The store unpacks layers in parallel: a layer that writes beneath a directory it has no
    entry for must not wait for the layers below while it unpacks, yet end with that directory's
    metadata from below (an explicit entry of its own still wins)."""
    snaps = OverlaySnapshotter(str(tmp_path / "snaps"))
    snaps.prepare("k0", None)
    apply_layer(io.BytesIO(tar(d("usr", mode=0o750, uid=7, gid=8, mtime=1000), f("usr/a"),
                               d("opt", mode=0o711, mtime=2000))), snaps.upper_dir("k0"))
    snaps.commit("c0", "k0")
    snaps.prepare("k1", "c0")
    asked: list[bool] = []

    def later() -> list[str]:
        asked.append(True)
        return snaps.lower_dirs("k1")

    apply_layer(io.BytesIO(tar(f("usr/lib/b"), f("opt/c"), d("opt", mode=0o755, mtime=3000), f("new/d"))),
                snaps.upper_dir("k1"), later)
    assert asked == [True]  # once, at the end
    upper = snaps.upper_dir("k1")
    st = os.lstat(os.path.join(upper, "usr"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o750, 7, 8, 1000)
    st = os.lstat(os.path.join(upper, "opt"))
    assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o755, 3000)
    assert stat.S_IMODE(os.lstat(os.path.join(upper, "usr", "lib")).st_mode) == 0o755  # nothing below: default
    assert stat.S_IMODE(os.lstat(os.path.join(upper, "new")).st_mode) == 0o755
    snaps.close()
