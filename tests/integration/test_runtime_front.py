"""dockyard-runtime's native front (native/runtime_front.c): what it answers itself, what it
hands over to the Python runtime, and that both print the same thing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from dockyard.shim.inproc import native_front_launcher
from runtime_helpers import RUNTIME, Runtime

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "native" / "runtime_front.c"

pytestmark = pytest.mark.skipif(native_front_launcher(RUNTIME) is None,
                                reason="dockyard-runtime was installed without its native front")


def _python(runtime: Runtime, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The same command through the Python runtime the front hands over to."""
    launcher = native_front_launcher(RUNTIME)
    assert launcher is not None
    proc = subprocess.run([launcher, "--root", runtime.root, *args], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def spy_front(tmp_path: Path) -> tuple[str, Path]:
    """A front built against a launcher that only records that it ran (and exits 42)."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    marker = tmp_path / "handed-over"
    launcher = tmp_path / "launcher"
    launcher.write_text(f"#!/bin/sh\necho \"$@\" > {marker}\nexit 42\n")
    launcher.chmod(0o755)
    front = tmp_path / "front"
    subprocess.run(["cc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", f'-DDOCKYARD_LAUNCHER="{launcher}"',
                    "-o", str(front), str(SOURCE)], check=True)
    return str(front), marker


def _spy(front: str, root: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([front, "--root", root, *args], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def _wait_status(runtime: Runtime, cid: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while runtime.state(cid)["status"] != status:
        assert time.monotonic() < deadline, f"{cid} never became {status}"
        time.sleep(0.02)


def test_state_prints_what_python_prints_in_every_status(runtime, tmp_path):
    from runtime_helpers import make_bundle

    bundle = make_bundle(str(tmp_path / "bundle"), ["sleep", "30"])
    bundle.spec["annotations"] = {"org.example/ünïcode": "a \"quoted\"\nvalue"}
    bundle.save()
    runtime("create", "--bundle", bundle.path, "c1")
    seen = []
    for step in (None, "start", "pause", "resume", "kill"):
        if step == "kill":
            runtime("kill", "c1", "KILL")
            _wait_status(runtime, "c1", "stopped")
        elif step:
            runtime(step, "c1")
        native = runtime("state", "c1").stdout
        assert native == _python(runtime, "state", "c1").stdout
        seen.append(json.loads(native)["status"])
    assert seen == ["created", "running", "paused", "running", "stopped"]
    assert json.loads(native)["pid"] == 0
    assert json.loads(native)["annotations"] == {"org.example/ünïcode": "a \"quoted\"\nvalue"}
    runtime("delete", "c1")
    assert not (Path(runtime.root) / "c1").exists()


def test_the_front_answers_state_start_kill_and_delete_itself(runtime, bundle, spy_front):
    front, marker = spy_front
    bundle.spec["process"]["args"] = ["sh", "-c", "trap 'exit 7' USR1; while true; do sleep 0.05; done"]
    bundle.save()
    runtime("create", "--bundle", bundle.path, "c1")
    state = _spy(front, runtime.root, "state", "c1")
    assert state.returncode == 0 and json.loads(state.stdout)["status"] == "created"
    assert _spy(front, runtime.root, "start", "c1").returncode == 0
    _wait_status(runtime, "c1", "running")
    time.sleep(0.2)  # the trap is set
    assert _spy(front, runtime.root, "kill", "c1", "usr1").returncode == 0
    _wait_status(runtime, "c1", "stopped")
    assert _spy(front, runtime.root, "kill", "c1", "KILL").returncode == 42  # stopped: Python's error
    marker.unlink()
    assert _spy(front, runtime.root, "delete", "--force", "c1").returncode == 0
    assert not marker.exists(), "the front handed over a command it should have answered"
    assert not (Path(runtime.root) / "c1").exists()
    for d in Path("/sys/fs/cgroup").glob("*/dockyard/c1"):
        raise AssertionError(f"{d} was left behind")


@pytest.mark.parametrize("args", [
    ["create", "--bundle", "/nonexistent", "x"],  # every other verb
    ["state", "missing"],  # no such container
    ["state", "a/b"],  # not an id
    ["--debug", "state", "c1"],  # a global flag the front does not handle
    ["--log-format", "yaml", "state", "c1"],
    ["state", "c1", "extra"],
    ["delete", "c1", "c2"],
    ["kill", "--all", "c1", "KILL"],
    ["kill", "c1", "RTMIN+1"],
    ["kill", "c1", "40"],
    ["state", "-a"],  # ids that look like flags are read as flags by Python
    ["start", "--force"],
    ["kill", "-a", "KILL"],
    ["delete", "--", "c1"],
    ["--version"],
])
def test_the_front_hands_over_what_it_does_not_handle(args, spy_front, tmp_path):
    front, marker = spy_front
    root = tmp_path / "state"
    (root / "c1").mkdir(parents=True)
    proc = _spy(front, str(root), *args)
    assert proc.returncode == 42 and marker.read_text().split() == ["--root", str(root), *args]


@pytest.mark.parametrize("root", ["{root}/", "{root}/.", "{root}/../state", "/{root}", "{root}//"])
def test_a_root_path_that_abspath_would_rewrite_is_handed_over(root, spy_front, tmp_path):
    front, marker = spy_front
    real = tmp_path / "state"
    (real / "c1").mkdir(parents=True)
    given = root.format(root=real)
    assert _spy(front, given, "state", "c1").returncode == 42
    assert marker.read_text().split() == ["--root", given, "state", "c1"]


def test_a_container_that_is_not_in_the_simple_case_is_handed_over(runtime, bundle, spy_front):
    front, marker = spy_front
    bundle.spec["process"]["args"] = ["sleep", "30"]
    bundle.save()
    runtime("create", "--bundle", bundle.path, "c1")
    assert _spy(front, runtime.root, "delete", "c1").returncode == 42  # not stopped: Python's errors
    runtime("start", "c1")
    assert _spy(front, runtime.root, "start", "c1").returncode == 42  # already running
    marker.unlink()
    # an unreadable summary is never guessed at
    front_file = Path(runtime.root) / "c1" / "front"
    front_file.write_text(front_file.read_text().replace("dockyard-front 1", "dockyard-front 2"))
    assert _spy(front, runtime.root, "state", "c1").returncode == 42
    front_file.unlink()
    assert _spy(front, runtime.root, "state", "c1").returncode == 42
    # through the real launcher the same commands still work
    assert runtime.state("c1")["status"] == "running"
    out = runtime("delete", "c1", check=False)
    assert out.returncode == 1 and "it is running" in out.stderr
    runtime("delete", "--force", "c1")


def test_leftover_processes_make_delete_hand_over_and_python_kills_them(runtime, tmp_path, spy_front):
    """A container sharing the host's PID namespace: its init exits, a child it left keeps the
    cgroup busy. The front's rmdir fails, so it hands over; the Python delete kills and removes."""
    from runtime_helpers import make_bundle

    bundle = make_bundle(str(tmp_path / "bundle"), ["sh", "-c", "sleep 60 & echo $! > /tmp/child"])
    bundle.spec["linux"]["namespaces"] = [ns for ns in bundle.spec["linux"]["namespaces"] if ns["type"] != "pid"]
    bundle.save()
    runtime("create", "--bundle", bundle.path, "c1")
    runtime("start", "c1")
    _wait_status(runtime, "c1", "stopped")
    child = int((Path(bundle.rootfs) / "tmp" / "child").read_text())
    front, marker = spy_front
    assert _spy(front, runtime.root, "delete", "c1").returncode == 42
    assert marker.exists()
    runtime("delete", "c1")
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{child}") and _state_of(child) not in ("Z", "X"):
        assert time.monotonic() < deadline, "the leftover process was not killed"
        time.sleep(0.02)
    assert not (Path(runtime.root) / "c1").exists()


def _state_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_start_reports_an_init_that_died_in_the_log_format_asked_for(runtime, bundle, tmp_path, log_format):
    import signal
    import threading

    runtime("create", "--bundle", bundle.path, "c1")
    pid = runtime.state("c1")["pid"]
    log = tmp_path / "log"
    # the init is stopped, so it never writes its byte, and killed while start waits for it
    os.kill(pid, signal.SIGSTOP)
    killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
    killer.start()
    try:
        out = runtime("--log", str(log), "--log-format", log_format, "start", "c1", check=False)
    finally:
        killer.join()
    message = "container c1: the init process exited before it could start"
    assert out.returncode == 1 and out.stderr == f"dockyard-runtime: {message}\n"
    line = log.read_text().splitlines()[-1]
    if log_format == "json":
        entry = json.loads(line)
        assert entry["level"] == "error" and entry["msg"] == message and entry["time"].endswith("Z")
        assert list(entry) == ["level", "msg", "time"]
    else:
        assert line.startswith('time="') and line.endswith(f' level=error msg="{message}"')
    runtime("delete", "c1")


def test_a_damaged_front_file_is_handed_over_never_misread(spy_front, tmp_path):
    """Every truncation and a few hostile edits of a valid file: the front prints a state only
    when the file is whole, hands over otherwise, and never crashes."""
    from dockyard.runtime import front as front_file
    from dockyard.runtime.state import ContainerState

    front, marker = spy_front
    state = ContainerState(id="c1", bundle="/b", rootfs="/b/rootfs", pid=os.getpid(), pid_start=1, created="now",
                           config={}, cgroup={"version": 2, "path": "/c1", "root": "/sys/fs/cgroup",
                                              "dir": "/nonexistent/c1"})
    good = front_file.text(state)
    assert good is not None
    root = tmp_path / "state"
    (root / "c1").mkdir(parents=True)
    damaged = [good[:n] for n in range(0, len(good), 7)]
    damaged += [good.replace("head 41", "head 18446744073709551615"), good.replace("head 41", "head -1"),
                good.replace("tail ", "tail 9"), good.replace("pid ", "pid -"), good.replace("pid ", "pid 99999999999"),
                good.replace("freezer v2 /", "freezer v2 "), good.replace("end\n", "end\nmore\n"),
                good.replace("\n", "\r\n"), "\0" * 100]
    assert good not in damaged
    for text in damaged:
        (root / "c1" / "front").write_text(text)
        proc = _spy(front, str(root), "state", "c1")
        assert proc.returncode in (0, 42), (text, proc.returncode, proc.stderr)
        if proc.returncode == 0:
            assert text == good
            assert json.loads(proc.stdout)["status"] == "stopped"
    (root / "c1" / "front").write_text(good)
    assert _spy(front, str(root), "state", "c1").returncode == 0


def test_a_delete_that_cannot_finish_leaves_the_state_for_python_to_report(runtime, bundle):
    """Something the front cannot remove in the container's directory: it hands over with
    state.json still in place, so Python reports the real error (not "does not exist")."""
    runtime("create", "--bundle", bundle.path, "c1")
    runtime("start", "c1")
    _wait_status(runtime, "c1", "stopped")
    junk = Path(runtime.root) / "c1" / "junk"
    junk.mkdir()
    out = runtime("delete", "c1", check=False)
    assert out.returncode == 1 and "Is a directory" in out.stderr, out.stderr
    assert runtime.state("c1")["status"] == "stopped"
    junk.rmdir()
    runtime("delete", "c1")
    assert not (Path(runtime.root) / "c1").exists()
