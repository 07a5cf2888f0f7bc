"""dockyardd driven by the real docker CLI (28.x) and docker-py: system, images, containers.

Each module runs one daemon on a temporary socket with temporary data and exec roots; the
fixture stops it by PID and removes the supervisor, the containers, their mounts and cgroups.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from dockyardd import Dockyardd, kill_daemon, launch, start_dockyardd, stop_dockyardd  # noqa: E402
from docker_engine import DockerResult, EngineError, Terminal, docker_cli  # noqa: E402

pytestmark = [pytest.mark.root]

CONTAINER_PARTS = ("dockyard.shim.client", "dockyard.services.specgen")


def _containers_ready() -> str | None:
    for module in CONTAINER_PARTS:
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        if found is None:
            return f"{module} has not landed yet"
    return None


needs_containers = pytest.mark.skipif(_containers_ready() is not None, reason=str(_containers_ready()))


# session scope: torn down after the last test (a module-scoped daemon shared by several modules
# would be stopped inside the next module's first test, whose leak check would count it)
@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockyardd]:
    if os.geteuid() != 0:
        pytest.skip("dockyardd needs root")
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    try:
        d = start_dockyardd(tmp_path_factory.mktemp("dockyardd"))
    except EngineError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        d.docker("pull", "busybox").check()
        if _containers_ready() is None:  # warm up: the supervisor and the parent cgroups exist from now on
            warm = d.docker("run", "--rm", "busybox", "true")
            if not warm.ok:
                print(f"warm-up run failed (the tests will show why):\n{warm}\n{d.log_tail()}")
    except BaseException:
        stop_dockyardd(d)
        raise
    yield d
    problems = stop_dockyardd(d)
    shutil.rmtree(d.dir, ignore_errors=True)
    if problems:
        pytest.fail("dockyardd left things behind:\n" + "\n".join(problems), pytrace=False)


class Names:
    def __init__(self, daemon: Dockyardd) -> None:
        self.daemon = daemon
        self.names: list[str] = []

    def new(self) -> str:
        name = f"dyd-{os.getpid()}-{len(self.names)}-{time.monotonic_ns() % 10**6}"
        self.names.append(name)
        return name


@pytest.fixture
def names(daemon: Dockyardd) -> Iterator[Names]:
    n = Names(daemon)
    yield n
    if n.names:
        daemon.docker("rm", "--force", *n.names, timeout=60)


def docker(daemon: Dockyardd, *args: str, input: str | None = None, timeout: float = 60) -> DockerResult:
    return daemon.docker(*args, input=input, timeout=timeout)


def explain(daemon: Dockyardd, result: DockerResult) -> str:
    return f"{result}\n--- dockyardd log (tail) ---\n{daemon.log_tail(30)}"


# --- system ---------------------------------------------------------------------------------

def test_version(daemon: Dockyardd) -> None:
    r = docker(daemon, "version", "--format", "{{json .Server}}")
    assert r.ok, explain(daemon, r)
    server = json.loads(r.stdout)
    assert server["ApiVersion"] == "1.45" and server["MinAPIVersion"] == "1.24"
    assert server["Os"] == "linux" and server["KernelVersion"] == os.uname().release


def test_info(daemon: Dockyardd) -> None:
    r = docker(daemon, "info", "--format", "{{json .}}")
    assert r.ok, explain(daemon, r)
    info = json.loads(r.stdout)
    assert info["DockerRootDir"] == str(daemon.data_root)
    assert info["DefaultRuntime"] == "dockyard-runtime" and "dockyard-runtime" in info["Runtimes"]
    assert any("loopback" in w for w in info["Warnings"])
    assert docker(daemon, "info").ok


def test_old_client_version_rejected(daemon: Dockyardd) -> None:
    env = daemon.env() | {"DOCKER_API_VERSION": "1.12"}
    import subprocess

    r = subprocess.run([docker_cli(), "version"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "too old" in r.stderr


def test_ping_and_version_with_docker_py(daemon: Dockyardd) -> None:
    client = daemon.client()
    try:
        assert client.ping() is True
        assert client.version()["ApiVersion"] == "1.45"
    finally:
        client.close()


# --- images ---------------------------------------------------------------------------------

def test_images_list_inspect_history(daemon: Dockyardd) -> None:
    r = docker(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}")
    assert r.ok and "busybox:latest" in r.stdout.split(), explain(daemon, r)
    image = json.loads(docker(daemon, "image", "inspect", "busybox").check().stdout)[0]
    assert image["RepoTags"] == ["busybox:latest"] and image["Config"]["Cmd"] == ["sh"]
    assert image["RootFS"]["Type"] == "layers" and image["Os"] == "linux"
    assert docker(daemon, "history", "busybox").check().stdout.count("\n") >= 2


def test_tag_and_remove(daemon: Dockyardd) -> None:
    docker(daemon, "tag", "busybox", "example.com/team/box:v1").check()
    listed = docker(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "example.com/team/box:v1" in listed
    r = docker(daemon, "rmi", "example.com/team/box:v1")
    assert r.ok and "Untagged: example.com/team/box:v1" in r.stdout, explain(daemon, r)
    r = docker(daemon, "rmi", "nosuchimage:1")
    assert not r.ok and "No such image" in r.stderr


def test_pull_other_images_is_refused_clearly(daemon: Dockyardd) -> None:
    r = docker(daemon, "pull", "alpine")  # Docker Hub: refused before any traffic leaves the machine
    assert not r.ok and "pulling from Docker Hub is not enabled" in r.stderr
    r = docker(daemon, "pull", "127.0.0.1:1/nothing:here")  # a closed loopback port
    assert not r.ok and "cannot reach registry 127.0.0.1:1" in r.stderr


def test_save_load_round_trip(daemon: Dockyardd, tmp_path: Path) -> None:
    docker(daemon, "tag", "busybox", "roundtrip:1").check()
    archive = tmp_path / "box.tar"
    docker(daemon, "save", "-o", str(archive), "roundtrip:1").check()
    docker(daemon, "rmi", "roundtrip:1").check()
    r = docker(daemon, "load", "-i", str(archive))
    assert r.ok and "Loaded image: roundtrip:1" in r.stdout, explain(daemon, r)
    docker(daemon, "rmi", "roundtrip:1").check()


def test_import(daemon: Dockyardd, tmp_path: Path) -> None:
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    (tmp_path / "root.tar").write_bytes(data.getvalue())
    r = docker(daemon, "import", str(tmp_path / "root.tar"), "imported:1")
    assert r.ok and r.stdout.strip().startswith("sha256:"), explain(daemon, r)
    docker(daemon, "rmi", "imported:1").check()


# --- containers -----------------------------------------------------------------------------

@needs_containers
def test_run_rm_echo(daemon: Dockyardd) -> None:
    before = docker(daemon, "ps", "-aq").stdout.split()
    r = docker(daemon, "run", "--rm", "busybox", "echo", "hi")
    assert r.ok and r.stdout == "hi\n", explain(daemon, r)
    assert docker(daemon, "ps", "-aq").stdout.split() == before


@needs_containers
def test_run_exit_code(daemon: Dockyardd, names: Names) -> None:
    name = names.new()
    r = docker(daemon, "run", "--name", name, "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3, explain(daemon, r)
    assert r.stdout == "out\n" and "err" in r.stderr
    state = daemon.inspect(name)["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 3 and not state["Running"]


@needs_containers
def test_detached_logs_stop_rm(daemon: Dockyardd) -> None:
    r = docker(daemon, "run", "-d", "busybox", "sh", "-c", "echo started; trap 'echo bye; exit 0' TERM; "
               "while true; do sleep 0.1; done")
    assert r.ok, explain(daemon, r)
    cid = r.stdout.strip()
    try:
        deadline = time.monotonic() + 10
        while "started" not in docker(daemon, "logs", cid).stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        assert docker(daemon, "logs", cid).stdout == "started\n"
        assert daemon.inspect(cid)["State"]["Running"] is True
        r = docker(daemon, "stop", "-t", "5", cid)
        assert r.ok, explain(daemon, r)
        state = daemon.inspect(cid)["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 0
        logs = docker(daemon, "logs", "--timestamps", cid).stdout.splitlines()
        assert [line.split(" ", 1)[1] for line in logs] == ["started", "bye"]
    finally:
        r = docker(daemon, "rm", cid)
    assert r.ok, explain(daemon, r)
    assert not docker(daemon, "inspect", cid).ok


@needs_containers
def test_exec(daemon: Dockyardd, names: Names) -> None:
    name = names.new()
    docker(daemon, "run", "-d", "--name", name, "busybox", "sleep", "60").check()
    r = docker(daemon, "exec", name, "sh", "-c", "echo in $HOSTNAME; exit 4")
    assert r.returncode == 4 and r.stdout.startswith("in "), explain(daemon, r)
    r = docker(daemon, "exec", "-i", name, "cat", input="piped\n")
    assert r.ok and r.stdout == "piped\n", explain(daemon, r)
    top = docker(daemon, "top", name)
    assert top.ok and "sleep 60" in top.stdout, explain(daemon, top)


@needs_containers
def test_ps_inspect_kill_wait(daemon: Dockyardd, names: Names) -> None:
    name = names.new()
    docker(daemon, "run", "-d", "--name", name, "--label", "suite=dockyardd", "busybox", "sleep", "60").check()
    ps = docker(daemon, "ps", "--filter", "label=suite=dockyardd", "--format", "{{.Names}} {{.Status}}")
    assert ps.ok and ps.stdout.startswith(f"{name} Up"), explain(daemon, ps)
    info = daemon.inspect(name)
    assert info["Name"] == f"/{name}" and info["State"]["Pid"] > 0
    assert info["Config"]["Cmd"] == ["sleep", "60"] and info["Config"]["Labels"]["suite"] == "dockyardd"
    assert docker(daemon, "kill", name).ok
    r = docker(daemon, "wait", name)
    assert r.ok and r.stdout.strip() == "137", explain(daemon, r)
    ps = docker(daemon, "ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}")
    assert ps.stdout.startswith("Exited (137)")
    assert name not in docker(daemon, "ps", "--format", "{{.Names}}").stdout.split()


@needs_containers
def test_interactive_tty(daemon: Dockyardd) -> None:
    term = Terminal([docker_cli(), "run", "--rm", "-it", "busybox", "sh"], env=daemon.env())
    try:
        term.expect(r"[#$] ", timeout=30)
        term.send("echo $((6*7)); tty\r")
        term.expect(r"42", timeout=10)
        term.expect(r"/dev/(pts/\d+|console)")
        term.send("exit 5\r")
        assert term.wait(30) == 5
    finally:
        term.close()


@needs_containers
def test_docker_py_run_and_logs(daemon: Dockyardd) -> None:
    client = daemon.client()
    try:
        out = client.containers.run("busybox", ["sh", "-c", "echo py"], remove=True)
        assert out == b"py\n"
        c = client.containers.run("busybox", ["sh", "-c", "echo a; echo b >&2"], detach=True)
        try:
            assert c.wait(timeout=30)["StatusCode"] == 0
            assert c.logs(stdout=True, stderr=False) == b"a\n"
            assert c.logs(stdout=False, stderr=True) == b"b\n"
        finally:
            c.remove(force=True)
    finally:
        client.close()


@needs_containers
def test_daemon_kill9_restart_keeps_containers(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = launch(tmp_path / "restart")
    try:
        d.docker("pull", "busybox").check()
        r = d.docker("run", "-d", "busybox", "sh", "-c", "echo one; sleep 60")
        assert r.ok, explain(d, r)
        cid = r.stdout.strip()
        deadline = time.monotonic() + 10
        while "one" not in d.docker("logs", cid).stdout and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = d.inspect(cid)["State"]["Pid"]
        kill_daemon(d, signal.SIGKILL)
        assert os.path.exists(f"/proc/{pid}"), "the container died with the daemon"
        d = launch(d.dir)
        state = d.inspect(cid)["State"]
        assert state["Running"] is True and state["Pid"] == pid, explain(d, d.docker("inspect", cid))
        assert d.docker("logs", cid).stdout == "one\n"
        assert d.docker("stop", "-t", "1", cid).ok
        assert d.inspect(cid)["State"]["ExitCode"] == 137
        # SIGTERM: the daemon goes, the containers stay
        r = d.docker("run", "-d", "busybox", "sleep", "60")
        pid = d.inspect(r.stdout.strip())["State"]["Pid"]
        assert kill_daemon(d) == 0
        assert os.path.exists(f"/proc/{pid}")
        d = launch(d.dir)
        assert d.inspect(r.stdout.strip())["State"]["Running"] is True
    finally:
        problems = stop_dockyardd(d)
    assert not problems, problems


def test_sighup_reloads_config(tmp_path: Path) -> None:
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"runtimes": {}}))
    d = launch(tmp_path / "hup", ["--config-file", str(config)])
    try:
        assert "extra" not in json.loads(d.docker("info", "--format", "{{json .Runtimes}}").check().stdout)
        config.write_text(json.dumps({"runtimes": {"extra": {"path": "/bin/true"}}}))
        d.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        runtimes: dict[str, Any] = {}
        while time.monotonic() < deadline:
            runtimes = json.loads(d.docker("info", "--format", "{{json .Runtimes}}").check().stdout)
            if "extra" in runtimes:
                break
            time.sleep(0.1)
        assert runtimes["extra"]["path"] == "/bin/true"
    finally:
        problems = stop_dockyardd(d)
    assert not problems, problems
