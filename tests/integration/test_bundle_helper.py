"""The bundle helper makes bundles that the reference runtime, runc, accepts and runs as asked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.bundle import (
    DEFAULT_CAPS,
    MASKED_PATHS,
    READONLY_PATHS,
    busybox_template,
    make_bundle,
    make_busybox_rootfs,
    read_spec,
)

RUNC = shutil.which("runc")
needs_runc = pytest.mark.skipif(RUNC is None, reason="runc is not installed")


def test_rootfs_has_busybox_applets_and_users(tmp_path: Path) -> None:
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    busybox = rootfs / "bin" / "busybox"
    assert busybox.is_file() and not busybox.is_symlink()
    assert os.readlink(rootfs / "bin" / "sh") == "busybox"
    assert (rootfs / "bin" / "ls").is_symlink()
    for d in ("proc", "sys", "dev", "tmp", "etc"):
        assert (rootfs / d).is_dir(), d
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    passwd = (rootfs / "etc" / "passwd").read_text()
    assert passwd.startswith("root:x:0:0:") and "nobody:x:65534:65534:" in passwd
    assert "nobody:x:65534:" in (rootfs / "etc" / "group").read_text()


def test_rootfs_copy_is_independent_of_the_cache(tmp_path: Path) -> None:
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    (rootfs / "etc" / "passwd").write_text("changed\n")
    assert (busybox_template() / "etc" / "passwd").read_text() != "changed\n"


def test_hardlinked_rootfs_shares_the_cached_files(tmp_path: Path) -> None:
    rootfs = make_busybox_rootfs(tmp_path / "rootfs", hardlink=True)
    assert (rootfs / "bin" / "busybox").stat().st_ino == (busybox_template() / "bin" / "busybox").stat().st_ino


def test_default_config_has_the_runc_spec_shape(tmp_path: Path) -> None:
    spec = read_spec(make_bundle(tmp_path / "b", ["echo", "hi"]))
    assert spec["ociVersion"] == "1.1.0"
    assert spec["process"]["args"] == ["echo", "hi"]
    assert spec["process"]["terminal"] is False
    assert spec["process"]["capabilities"]["bounding"] == DEFAULT_CAPS
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]
    assert [n["type"] for n in spec["linux"]["namespaces"]] == ["pid", "network", "ipc", "uts", "mount"]
    assert spec["linux"]["maskedPaths"] == MASKED_PATHS
    assert spec["linux"]["readonlyPaths"] == READONLY_PATHS


def test_overrides_change_only_what_they_name(tmp_path: Path) -> None:
    spec = read_spec(make_bundle(
        tmp_path / "b", ["sh"], terminal=True, env={"A": "1"}, user=(1000, 1000, [10]),
        namespaces=["pid", "mount"], capabilities=["chown"], hostname=None,
        edit=lambda s: s["process"].__setitem__("cwd", "/tmp")))
    assert spec["process"]["terminal"] is True
    assert spec["process"]["env"] == ["A=1"]
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10]}
    assert spec["linux"]["namespaces"] == [{"type": "pid"}, {"type": "mount"}]
    assert spec["process"]["capabilities"]["effective"] == ["CAP_CHOWN"]
    assert "hostname" not in spec
    assert spec["process"]["cwd"] == "/tmp"


def test_unknown_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="hostnme"):
        make_bundle(tmp_path / "b", ["true"], hostnme="x")


@pytest.fixture
def runc_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A private runc state directory and a unique container id, force-deleted afterwards."""
    root = tmp_path / "runc-state"
    cid = f"bundle-helper-{uuid.uuid4().hex[:12]}"
    yield root, cid
    assert RUNC is not None
    subprocess.run([RUNC, "--root", str(root), "delete", "--force", cid], capture_output=True)


def _runc_run(root: Path, cid: str, bundle: Path) -> subprocess.CompletedProcess[str]:
    assert RUNC is not None
    return subprocess.run([RUNC, "--root", str(root), "run", "--bundle", str(bundle), cid],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


@pytest.mark.root
@needs_runc
def test_runc_runs_the_bundle(tmp_path: Path, runc_root: tuple[Path, str]) -> None:
    root, cid = runc_root
    bundle = make_bundle(tmp_path / "bundle", ["echo", "hi"])
    result = _runc_run(root, cid, bundle)
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
    listed = subprocess.run([RUNC, "--root", str(root), "list", "--format", "json"],
                            capture_output=True, text=True, check=True).stdout
    assert json.loads(listed or "null") in (None, [])


@pytest.mark.root
@needs_runc
def test_runc_applies_the_overrides(tmp_path: Path, runc_root: tuple[Path, str]) -> None:
    root, cid = runc_root
    script = 'hostname; id -u; id -g; echo "$GREETING"; pwd; exit 3'
    bundle = make_bundle(tmp_path / "bundle", ["sh", "-c", script], hostname="boxy",
                         user=(65534, 65534), extra_env=["GREETING=hello"], cwd="/tmp")
    result = _runc_run(root, cid, bundle)
    assert result.returncode == 3, result.stderr
    assert result.stdout.split() == ["boxy", "65534", "65534", "hello", "/tmp"]


@pytest.mark.root
@needs_runc
def test_runc_honours_masked_and_readonly_paths(tmp_path: Path, runc_root: tuple[Path, str]) -> None:
    root, cid = runc_root
    # This machine's kernel has no /proc/kcore; /proc/timer_list is masked too and has content.
    script = "wc -c < /proc/timer_list; touch /x 2>/dev/null || echo ro-root; grep CapEff /proc/self/status"
    bundle = make_bundle(tmp_path / "bundle", ["sh", "-c", script])
    result = _runc_run(root, cid, bundle)
    assert result.returncode == 0, result.stderr
    # AUDIT_WRITE (29), KILL (5) and NET_BIND_SERVICE (10)
    assert result.stdout.split() == ["0", "ro-root", "CapEff:", "0000000020000420"]
