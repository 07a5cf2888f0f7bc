"""The OCI lifecycle through the real dockyard-runtime: create, start, state, kill, delete..."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from dockyard.runtime.state import process_start_time

pytestmark = pytest.mark.root


def wait_status(runtime, cid, status, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runtime.state(cid)["status"] == status:
            return
        time.sleep(0.02)
    raise AssertionError(f"{cid} never reached {status}: {runtime.state(cid)}")


def test_run_passes_output_and_exit_code(runtime, bundle):
    bundle.spec["process"]["args"] = ["sh", "-c", "echo out; echo err >&2; exit 3"]
    bundle.save()
    proc = runtime("run", "--bundle", bundle.path, "c1", check=False)
    assert proc.returncode == 3
    assert proc.stdout == "out\n"
    assert "err" in proc.stderr
    assert runtime("list", "-q").stdout == ""


def test_lifecycle_states_and_state_json(runtime, bundle, tmp_path):
    bundle.spec["process"]["args"] = ["sh", "-c", "read line; echo got $line"]
    bundle.spec["annotations"] = {"org.example": "yes"}
    bundle.save()
    pid_file = tmp_path / "pid"
    runtime("create", "--bundle", bundle.path, "--pid-file", str(pid_file), "c1", stdin=subprocess.DEVNULL)
    state = runtime.state("c1")
    assert state["status"] == "created"
    assert state["id"] == "c1"
    assert state["pid"] == int(pid_file.read_text())
    assert state["bundle"] == bundle.path
    assert state["annotations"] == {"org.example": "yes"}
    assert state["ociVersion"].startswith("1.")
    # the init is alive and is the container's PID 1 in its own pid namespace
    assert os.readlink(f"/proc/{state['pid']}/ns/pid") != os.readlink("/proc/self/ns/pid")
    runtime("start", "c1")
    wait_status(runtime, "c1", "stopped")
    assert runtime.state("c1")["pid"] == 0
    runtime("delete", "c1")
    assert runtime("state", "c1", check=False).returncode == 1


def test_wrong_state_operations_fail_clearly(runtime, bundle):
    bundle.spec["process"]["args"] = ["sleep", "100"]
    bundle.save()
    runtime("create", "--bundle", bundle.path, "c1")
    assert "needs paused" in runtime("resume", "c1", check=False).stderr
    runtime("start", "c1")
    wait_status(runtime, "c1", "running")
    err = runtime("start", "c1", check=False)
    assert err.returncode == 1 and "it is running" in err.stderr
    err = runtime("delete", "c1", check=False)
    assert err.returncode == 1 and "running" in err.stderr
    runtime("pause", "c1")
    assert runtime.state("c1")["status"] == "paused"
    runtime("resume", "c1")
    assert runtime.state("c1")["status"] == "running"
    runtime("kill", "c1", "KILL")
    wait_status(runtime, "c1", "stopped")
    err = runtime("kill", "c1", "TERM", check=False)
    assert err.returncode == 1 and "stopped" in err.stderr
    runtime("delete", "c1")


def test_duplicate_id_and_unknown_container(runtime, bundle):
    bundle.spec["process"]["args"] = ["sleep", "100"]
    bundle.save()
    runtime("create", "--bundle", bundle.path, "c1")
    err = runtime("create", "--bundle", bundle.path, "c1", check=False)
    assert err.returncode == 1 and "already exists" in err.stderr
    assert "does not exist" in runtime("state", "nope", check=False).stderr
    runtime("delete", "--force", "c1")


def test_delete_force_kills_a_running_container(runtime, bundle):
    bundle.spec["process"]["args"] = ["sh", "-c", "sleep 100 & sleep 100"]
    bundle.save()
    runtime("run", "--detach", "--bundle", bundle.path, "c1")
    pids = json.loads(runtime("ps", "--format", "json", "c1").stdout)
    assert len(pids) >= 2
    runtime("delete", "--force", "c1")
    for pid in pids:
        assert process_start_time(pid) is None  # gone, or a zombie waiting for its reaper


def test_list_and_ps(runtime, bundle):
    bundle.spec["process"]["args"] = ["sleep", "100"]
    bundle.save()
    runtime("run", "-d", "--bundle", bundle.path, "c1")
    listing = json.loads(runtime("list", "--format", "json").stdout)
    assert [c["id"] for c in listing] == ["c1"] and listing[0]["status"] == "running"
    table = runtime("list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"] and "c1" in table[1]
    ps = runtime("ps", "c1").stdout
    assert "sleep 100" in ps and "PID" in ps.splitlines()[0]
    runtime("kill", "--all", "c1", "9")
    wait_status(runtime, "c1", "stopped")
    runtime("delete", "c1")


def test_exec_output_exit_code_user_env_cwd(runtime, bundle, tmp_path):
    bundle.spec["process"]["args"] = ["sleep", "100"]
    bundle.save()
    runtime("run", "-d", "--bundle", bundle.path, "c1")
    proc = runtime("exec", "--user", "1000:1000", "--cwd", "/tmp", "--env", "FOO=bar", "c1",
                   "sh", "-c", "id -u; pwd; echo $FOO; exit 7", check=False)
    assert proc.returncode == 7
    assert proc.stdout.split() == ["1000", "/tmp", "bar"]
    process = dict(bundle.spec["process"], args=["cat", "/etc/hostname-not-there"])
    (tmp_path / "p.json").write_text(json.dumps(process))
    proc = runtime("exec", "--process", str(tmp_path / "p.json"), "c1", check=False)
    assert proc.returncode == 1 and "No such file" in proc.stderr
    missing = runtime("exec", "c1", "no-such-program", check=False)
    assert missing.returncode == 1 and "executable file not found" in missing.stderr
    pid_file = tmp_path / "exec.pid"
    runtime("exec", "--detach", "--pid-file", str(pid_file), "c1", "sleep", "50")
    pid = int(pid_file.read_text())
    assert pid in json.loads(runtime("ps", "--format", "json", "c1").stdout)
    runtime("delete", "--force", "c1")


def test_bad_bundle_leaves_nothing_behind(runtime, bundle, tmp_path):
    bundle.spec["process"]["args"] = ["no-such-program"]
    bundle.save()
    err = runtime("create", "--bundle", bundle.path, "c1", check=False)
    assert err.returncode == 1 and "executable file not found" in err.stderr
    assert runtime("list", "-q").stdout == ""
    assert not os.path.exists(os.path.join(runtime.root, "c1"))
    (tmp_path / "bundle" / "config.json").write_text("{broken")
    err = runtime("create", "--bundle", bundle.path, "c2", check=False)
    assert err.returncode == 1 and "invalid JSON" in err.stderr
    assert not os.path.exists(os.path.join(runtime.root, "c2"))


def test_hooks_run_with_state_on_stdin(runtime, bundle, tmp_path):
    out = tmp_path / "hooks"
    out.mkdir()
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\ncat > {out}/$1\n")
    hook.chmod(0o755)
    bundle.spec["process"]["args"] = ["true"]
    bundle.spec["hooks"] = {kind: [{"path": str(hook), "args": ["hook.sh", kind]}]
                            for kind in ("prestart", "createRuntime", "poststart", "poststop")}
    bundle.save()
    runtime("create", "--bundle", bundle.path, "c1")
    for kind in ("prestart", "createRuntime"):
        state = json.loads((out / kind).read_text())
        assert state["id"] == "c1" and state["status"] == "creating" and state["pid"] > 0
    runtime("start", "c1")
    assert json.loads((out / "poststart").read_text())["id"] == "c1"
    wait_status(runtime, "c1", "stopped")
    runtime("delete", "c1")
    assert json.loads((out / "poststop").read_text())["status"] == "stopped"


def test_failing_prestart_hook_fails_create(runtime, bundle):
    bundle.spec["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 4"]}]}
    bundle.save()
    err = runtime("create", "--bundle", bundle.path, "c1", check=False)
    assert err.returncode == 1 and "prestart hook" in err.stderr and "nope" in err.stderr
    assert runtime("list", "-q").stdout == ""
