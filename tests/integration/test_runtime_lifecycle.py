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


def test_a_failing_poststart_hook_warns_and_the_rest_still_run(runtime, bundle, tmp_path):
    marker = tmp_path / "second-ran"
    bundle.spec["hooks"] = {"poststart": [{"path": "/bin/false"},
                                          {"path": "/bin/sh", "args": ["sh", "-c", f"touch {marker}"]}]}
    bundle.save()
    runtime("create", "--bundle", bundle.path, "c1")
    out = runtime("start", "c1")
    assert "poststart hook failed" in out.stderr and marker.exists()
    runtime("delete", "--force", "c1")


def test_unknown_or_unavailable_capabilities_fail_create(runtime, bundle):
    bundle.spec["process"]["capabilities"]["bounding"].append("CAP_TEST")
    bundle.save()
    out = runtime("create", "--bundle", bundle.path, "c1", check=False)
    assert out.returncode == 1 and "CAP_TEST" in out.stderr
    assert runtime("list", "-q").stdout == ""


@pytest.mark.parametrize("propagation", ["shared", "rshared", "private", "rslave"])
def test_rootfs_propagation(runtime, bundle, propagation):
    bundle.spec["linux"]["rootfsPropagation"] = propagation
    bundle.spec["process"]["args"] = ["sh", "-c", "awk '$5 == \"/\"' /proc/self/mountinfo"]
    bundle.save()
    out = runtime("run", "--bundle", bundle.path, "c1")
    assert ("shared:" in out.stdout) == ("shared" in propagation), out.stdout


def test_hostname_in_a_uts_namespace_joined_by_path(runtime, bundle, tmp_path):
    from runtime_helpers import make_bundle

    bundle.spec["process"]["args"] = ["sleep", "100"]
    bundle.spec["hostname"] = "first"
    bundle.save()
    runtime("run", "-d", "--bundle", bundle.path, "first")
    pid = runtime.state("first")["pid"]
    second = make_bundle(str(tmp_path / "second"), ["hostname"])
    for ns in second.spec["linux"]["namespaces"]:
        if ns["type"] == "uts":
            ns["path"] = f"/proc/{pid}/ns/uts"
    second.spec["hostname"] = "shared-name"
    second.save()
    assert runtime("run", "--bundle", second.path, "second").stdout.strip() == "shared-name"
    runtime("delete", "--force", "first")


def test_without_a_mount_namespace(runtime, bundle):
    linux = bundle.spec["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "mount"]
    bundle.spec["process"]["args"] = ["sh", "-c", "echo chrooted; ls /bin/busybox"]
    bundle.save()
    out = runtime("run", "--bundle", bundle.path, "c1")
    assert out.stdout.split() == ["chrooted", "/bin/busybox"]


def test_a_create_killed_midway_is_cleaned_up_by_delete(runtime, bundle, tmp_path):
    """SIGKILL of the runtime in the middle of `create` (here: during a createRuntime hook, once
    the init is in its cgroup) leaves a state that reads as stopped, and `delete` removes the
    container's directory and cgroups."""
    from dockyard.cgroups import manager_from_dict
    from dockyard.errors import DockyardError
    from dockyard.runtime.state import StateStore
    from runtime_helpers import RUNTIME

    marker = tmp_path / "hook-pid"
    bundle.spec["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", f"echo $$ > {marker}; exec sleep 30"]}]}
    bundle.save()
    proc = subprocess.Popen([RUNTIME, "--root", runtime.root, "create", "--bundle", bundle.path, "c1"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hook_pid = 0
    try:
        deadline = time.monotonic() + 20
        while not (marker.exists() and marker.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)
        hook_pid = int(marker.read_text())
        cg = manager_from_dict(StateStore(runtime.root).load("c1").cgroup)
        assert cg.pids(), "the init is in the container's cgroup by now"
        proc.kill()
        proc.wait(10)
        assert runtime.state("c1")["status"] == "stopped"
        runtime("delete", "c1")
        assert not os.path.exists(os.path.join(runtime.root, "c1"))
        with pytest.raises(DockyardError):
            cg.pids()  # its directories are gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if hook_pid:
            try:
                os.kill(hook_pid, 9)
            except ProcessLookupError:
                pass
