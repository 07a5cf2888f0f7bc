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
    bundle.mkdir()
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
