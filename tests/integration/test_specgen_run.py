"""A spec from services.specgen runs under the real dockyard-runtime with Docker's confinement."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from dockyard.services import specgen
from runtime_helpers import Runtime, busybox_rootfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

SCRIPT = ("id; grep CapEff /proc/self/status; hostname; pwd; echo FOO=$FOO; "
          "unshare -n true 2>/dev/null && echo UNSHARE=ok || echo UNSHARE=denied; "
          "mkdir -p /tmp/m; mount -t tmpfs t /tmp/m 2>/dev/null && echo MOUNT=ok || echo MOUNT=denied; "
          "cat /etc/hostname")


def run(tmp_path: Path, runtime: Runtime, config: dict, host: dict, init_path: str | None = None) -> str:
    bundle = tmp_path / "bundle"
    bundle.mkdir(parents=True)
    busybox_rootfs(str(bundle / "rootfs"))
    (tmp_path / "hostname").write_text("web\n")
    cid = "specgen" + uuid.uuid4().hex
    spec = specgen.build_spec(cid, config, host, {"Env": ["PATH=/bin"], "Cmd": ["sh", "-c", SCRIPT]},
                              str(bundle / "rootfs"), {"hostname": str(tmp_path / "hostname")},
                              cgroup_parent="/dockyard-test", init_path=init_path)
    (bundle / "config.json").write_text(json.dumps(spec))
    return runtime("run", "--bundle", str(bundle), cid, timeout=60).stdout


def test_default_confinement(tmp_path: Path, runtime: Runtime) -> None:
    out = run(tmp_path, runtime, {"Hostname": "web", "Env": ["FOO=bar"], "WorkingDir": "/tmp", "User": "user"}, {})
    assert "uid=1000(user) gid=1000(user)" in out
    assert "CapEff:\t0000000000000000" in out  # a non-root user keeps no effective capabilities
    assert "\nweb\n/tmp\nFOO=bar\n" in out and "UNSHARE=denied" in out and "MOUNT=denied" in out


def test_root_default_caps_and_seccomp(tmp_path: Path, runtime: Runtime) -> None:
    out = run(tmp_path, runtime, {}, {})
    assert "uid=0(root) gid=0(root)" in out and "CapEff:\t00000000a80425fb" in out
    assert "UNSHARE=denied" in out and "MOUNT=denied" in out


def test_sys_admin_unconfined_allows_mount(tmp_path: Path, runtime: Runtime) -> None:
    out = run(tmp_path, runtime, {}, {"CapAdd": ["SYS_ADMIN"], "SecurityOpt": ["seccomp=unconfined"]})
    assert "UNSHARE=ok" in out and "MOUNT=ok" in out


@pytest.mark.skipif(not os.path.exists("/usr/bin/tini-static"), reason="tini-static (Debian tini) not installed")
def test_init(tmp_path: Path, runtime: Runtime) -> None:
    out = run(tmp_path, runtime, {"Cmd": ["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"]}, {"Init": True},
              init_path="/usr/bin/tini-static")
    assert out.startswith("/sbin/docker-init -- sh -c")


def test_seccomp_program_cache(tmp_path: Path, runtime: Runtime) -> None:
    """The second container with the same profile loads the program cached by the first: the
    same bytes libseccomp generates, and the same confinement."""
    from dockyard.runtime.state import SECCOMP_CACHE
    from dockyard.security.seccomp import compile_filter

    cache = Path(runtime.root) / SECCOMP_CACHE
    first = run(tmp_path / "a", runtime, {}, {})
    entries = list(cache.iterdir())
    assert len(entries) == 1 and (entries[0].stat().st_mode & 0o777) == 0o600
    second = run(tmp_path / "b", runtime, {}, {})
    for out in (first, second):
        assert "UNSHARE=denied" in out and "MOUNT=denied" in out
    spec = specgen.build_spec("x", {}, {}, {"Cmd": ["true"]}, str(tmp_path), {})
    fresh = compile_filter(spec["linux"]["seccomp"])
    try:
        assert entries[0].read_bytes().split(b"\n", 1)[1] == fresh.export_bpf()
    finally:
        fresh.release()
    entries[0].chmod(0o666)  # a cache file others could have written is not trusted
    assert compile_filter(spec["linux"]["seccomp"], str(cache)).__class__.__name__ == "SeccompFilter"
