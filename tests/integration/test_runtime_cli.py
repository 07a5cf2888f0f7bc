"""The runc-compatible command line: flags container managers pass, logs they read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dockyard.runtime.spec import load_bundle
from runtime_helpers import RUNTIME

pytestmark = pytest.mark.root


def test_version_and_features(runtime):
    assert runtime("--version").stdout.splitlines()[1] == "spec: 1.1.0"
    features = json.loads(runtime("features").stdout)
    assert features["ociVersionMax"] == "1.1.0"
    assert "CAP_SYS_ADMIN" in features["linux"]["capabilities"]
    assert set(features["linux"]["namespaces"]) >= {"pid", "network", "mount", "user", "cgroup", "ipc", "uts"}
    assert features["linux"]["seccomp"]["enabled"] is True


def test_spec_writes_a_valid_config(runtime, tmp_path):
    (tmp_path / "rootfs").mkdir()
    runtime("spec", "--bundle", str(tmp_path))
    spec = load_bundle(str(tmp_path))
    assert spec["process"]["args"] == ["sh"]
    again = runtime("spec", "--bundle", str(tmp_path), check=False)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_errors_go_to_the_json_log_as_containerd_reads_them(runtime, tmp_path):
    log = tmp_path / "log.json"
    out = runtime("--log", str(log), "--log-format", "json", "state", "missing", check=False)
    assert out.returncode == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "does not exist" in entry["msg"] and entry["time"]


def test_go_style_single_dash_flags_and_unknown_flags(runtime, bundle):
    runtime("-root", runtime.root, "run", "-bundle", bundle.path, "c1")
    out = runtime("create", "--frobnicate", "c1", check=False)
    assert out.returncode == 2 and "flag provided but not defined: --frobnicate" in out.stderr


def test_systemd_cgroup_driver_is_refused_clearly(runtime, bundle):
    out = runtime("--systemd-cgroup", "create", "--bundle", bundle.path, "c1", check=False)
    assert out.returncode == 1 and "not implemented: systemd cgroup driver" in out.stderr
    assert runtime("list", "-q").stdout == ""


def test_no_pivot(runtime, bundle):
    bundle.spec["process"]["args"] = ["sh", "-c", "ls /; cat /proc/self/mountinfo | head -1"]
    bundle.save()
    out = runtime("run", "--no-pivot", "--bundle", bundle.path, "c1")
    assert "bin" in out.stdout.split()


def test_preserve_fds(runtime, bundle):
    r, w = os.pipe()
    try:
        bundle.spec["process"]["args"] = ["sh", "-c", "echo through-fd3 >&3"]
        bundle.save()
        # the caller hands its pipe to the runtime as fd 3, as `--preserve-fds 1` expects
        hand_over = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.execv(sys.argv[2], sys.argv[2:])"
        subprocess.run([sys.executable, "-c", hand_over, str(w), RUNTIME, "--root", runtime.root, "run",
                        "--preserve-fds", "1", "--bundle", bundle.path, "c1"], pass_fds=(w,), check=True,
                       stdout=subprocess.DEVNULL, timeout=30)
        os.close(w)
        w = -1
        assert os.read(r, 100) == b"through-fd3\n"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_update_changes_limits(runtime, bundle):
    bundle.spec["process"]["args"] = ["sleep", "100"]
    bundle.spec["linux"]["resources"] = {"pids": {"limit": 50}}
    bundle.save()
    runtime("run", "-d", "--bundle", bundle.path, "c1")
    runtime("update", "--pids-limit", "7", "--memory", "48m", "c1")
    out = runtime("exec", "c1", "cat", "/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert out.stdout.split() == ["7", str(48 * 1024 * 1024)]
    runtime("delete", "--force", "c1")


def test_checkpoint_is_not_faked(runtime):
    out = runtime("checkpoint", "c1", check=False)
    assert out.returncode == 1 and "not implemented" in out.stderr
