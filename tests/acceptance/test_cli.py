"""The `dockyard` CLI against a real dockyardd (and its auto-start of one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_dockyardd_api import Names, daemon, names, needs_containers  # noqa: F401
from dockyardd import Dockyardd

pytestmark = [pytest.mark.root, needs_containers]
CLI = str(Path(sys.executable).parent / "dockyard")


def dockyard(d: Dockyardd | None, *args: str, input: str | None = None, env: dict[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    if d is not None:
        full["DOCKYARD_HOST"] = f"unix://{d.socket}"
    full.update(env or {})
    return subprocess.run([CLI, *args], capture_output=True, text=True, input=input, env=full, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL)


def test_run_exit_codes_and_stdin(daemon: Dockyardd) -> None:
    r = dockyard(daemon, "run", "--rm", "busybox", "echo", "hello")
    assert r.returncode == 0 and r.stdout == "hello\n", r
    r = dockyard(daemon, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3 and r.stdout == "out\n" and r.stderr == "err\n", r
    r = dockyard(daemon, "run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z", input="piped\n")
    assert r.returncode == 0 and r.stdout == "PIPED\n", r
    r = dockyard(daemon, "run", "--rm", "busybox", "no-such-program")
    assert r.returncode == 127 or r.returncode == 126, r


def test_detached_exec_ps_logs_rm(daemon: Dockyardd, names: Names) -> None:
    name = names.new()
    r = dockyard(daemon, "run", "-d", "--name", name, "busybox", "sh", "-c", "echo started; sleep 60")
    assert r.returncode == 0 and len(r.stdout.strip()) == 64, r
    assert dockyard(daemon, "exec", name, "echo", "inside").stdout == "inside\n"
    ps = dockyard(daemon, "ps", "--format", "{{.Names}}")
    assert name in ps.stdout.split(), ps
    deadline = time.monotonic() + 10
    while "started" not in dockyard(daemon, "logs", name).stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dockyard(daemon, "logs", name).stdout == "started\n"
    assert dockyard(daemon, "rm", "-f", name).returncode == 0
    assert name not in dockyard(daemon, "ps", "-a", "--format", "{{.Names}}").stdout.split()


def test_run_namespace_and_device_flags(daemon: Dockyardd, names: Names) -> None:
    name = names.new()
    assert dockyard(daemon, "run", "-d", "--name", name, "busybox", "sleep", "60").returncode == 0
    r = dockyard(daemon, "run", "--rm", "--pid", f"container:{name}", "--uts", "host",
                 "--device-cgroup-rule", "c 7:128 rwm", "busybox", "sh", "-c",
                 "ps -o args | grep -c '^sleep 60'; hostname; grep -c '^c 7:128 rwm' /sys/fs/cgroup/devices/devices.list")
    assert r.returncode == 0 and r.stdout.split() == ["1", os.uname().nodename, "1"], r
    assert dockyard(daemon, "rm", "-f", name).returncode == 0


def test_errors_like_docker(daemon: Dockyardd) -> None:
    r = dockyard(daemon, "inspect", "no-such-container-here")
    assert r.returncode != 0 and "No such" in r.stderr, r


def test_autostart(tmp_path: Path) -> None:
    """No daemon on the socket: the CLI starts one (here on a test socket and test roots)."""
    root = tmp_path / "auto"
    root.mkdir()
    env = {"DOCKYARD_HOST": f"unix://{root}/sock", "DOCKYARD_AUTOSTART": "1",
           "DOCKYARD_DATA_ROOT": str(root / "data"), "DOCKYARD_EXEC_ROOT": str(root / "exec"),
           "DOCKYARD_BRIDGE": "none"}
    try:
        r = dockyard(None, "run", "--rm", "busybox", "echo", "hello", env=env)
        assert r.returncode == 0 and r.stdout == "hello\n", r
    finally:
        for pidfile in (root / "dockyardd.pid", root / "exec" / "shim" / "shim.pid"):
            try:
                pid = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.05)


def test_cp_both_ways(daemon: Dockyardd, names: Names, tmp_path: Path) -> None:
    name = names.new()
    r = dockyard(daemon, "run", "-d", "--name", name, "busybox", "sh", "-c",
                 "mkdir -p /srv/dir/sub && echo inside > /srv/dir/sub/f && ln -s /etc /srv/dir/link && sleep 60")
    assert r.returncode == 0, r
    deadline = time.monotonic() + 10
    while dockyard(daemon, "exec", name, "test", "-e", "/srv/dir/link").returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # container -> host: a new destination takes the directory's place; an existing one gets it inside
    assert dockyard(daemon, "cp", f"{name}:/srv/dir", str(tmp_path / "copy")).returncode == 0
    assert (tmp_path / "copy" / "sub" / "f").read_text() == "inside\n"
    assert os.readlink(tmp_path / "copy" / "link") == "/etc"  # a symlink stays a symlink
    (tmp_path / "existing").mkdir()
    assert dockyard(daemon, "cp", f"{name}:/srv/dir/sub/f", str(tmp_path / "existing")).returncode == 0
    assert (tmp_path / "existing" / "f").read_text() == "inside\n"
    # host -> container: a file under a new name, a directory into an existing one
    (tmp_path / "up.txt").write_text("uploaded\n")
    assert dockyard(daemon, "cp", str(tmp_path / "up.txt"), f"{name}:/srv/renamed.txt").returncode == 0
    assert dockyard(daemon, "cp", str(tmp_path / "existing"), f"{name}:/srv/").returncode == 0
    r = dockyard(daemon, "exec", name, "cat", "/srv/renamed.txt", "/srv/existing/f")
    assert r.stdout == "uploaded\ninside\n", r
    r = dockyard(daemon, "cp", f"{name}:/no/such", str(tmp_path / "x"))
    assert r.returncode != 0 and "Could not find the file" in r.stderr, r


def test_stats_table_and_format(daemon: Dockyardd, names: Names) -> None:
    name = names.new()
    assert dockyard(daemon, "run", "-d", "--name", name, "--memory", "64m", "busybox", "sleep", "60").returncode == 0
    r = dockyard(daemon, "stats", "--no-stream", name)
    assert r.returncode == 0, r
    header, row = r.stdout.splitlines()
    assert header.split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"] and name in row and "64MiB" in row, r.stdout
    r = dockyard(daemon, "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", name)
    assert r.stdout == f"{name} 1\n", r


def test_build_with_dockerignore_and_iidfile(daemon: Dockyardd, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "app" / "main.txt").write_text("main\n")
    (ctx / "app" / "debug.log").write_text("secret\n")
    (ctx / ".dockerignore").write_text("**/*.log\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY app /app\nCMD [\"ls\", \"/app\"]\n")
    iid = tmp_path / "iid"
    tag = f"dy-cli-build-{os.getpid()}"
    r = dockyard(daemon, "build", "-t", tag, "--iidfile", str(iid), str(ctx), timeout=120)
    try:
        assert r.returncode == 0 and "Successfully tagged" in r.stdout, r
        assert iid.read_text().startswith("sha256:")
        r = dockyard(daemon, "run", "--rm", tag)
        assert r.returncode == 0 and r.stdout == "main.txt\n", r
        (ctx / "Dockerfile").write_text("FROM busybox\nRUN exit 4\n")
        r = dockyard(daemon, "build", str(ctx), timeout=120)
        assert r.returncode == 4 and "returned a non-zero code: 4" in r.stderr, r
        q = dockyard(daemon, "build", "-q", "-f", "-", str(ctx), input="FROM busybox\nENV X=1\n", timeout=120)
        assert q.returncode == 0 and q.stdout.startswith("sha256:"), q
    finally:
        dockyard(daemon, "rmi", "-f", tag)
