"""`dockyard registry serve` on loopback, driven by the `dockyard` CLI through a test dockyardd:
push, pull, login and logout (issue 5's CLI side), progress output on a terminal and off it."""

from __future__ import annotations

import base64
import io
import json
import os
import pty
import select
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from test_dockyardd_api import daemon  # noqa: E402,F401 - the session's dockyardd
from dockyardd import Dockyardd  # noqa: E402

pytestmark = [pytest.mark.root]
CLI = str(Path(sys.executable).parent / "dockyard")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CliRegistry:
    """`dockyard registry serve --addr 127.0.0.1:PORT --root DIR [extra]`, stopped by its PID."""

    def __init__(self, directory: Path, extra: list[str] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.log_path = directory / "registry.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([CLI, "registry", "serve", "--addr", self.host,
                                             "--root", str(directory / "root"), *(extra or [])],
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"dockyard registry serve did not start:\n{self.log_path.read_text()}")
            time.sleep(0.05)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class Cli:
    """The dockyard CLI against the test daemon, with its own config directory."""

    def __init__(self, d: Dockyardd, config_dir: Path) -> None:
        self.daemon = d
        self.config_dir = config_dir
        self.env = {**os.environ, "DOCKYARD_HOST": f"unix://{d.socket}", "DOCKYARD_CONFIG": str(config_dir)}

    def __call__(self, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *args], capture_output=True, text=True, input=input, env=self.env,
                              timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)

    def on_terminal(self, *args: str, answers: list[tuple[str, str]] | None = None,
                    timeout: float = 120) -> tuple[int, str]:
        """Run with stdin, stdout and stderr on a new pseudo-terminal (its own session, so that
        getpass finds no other terminal); each (prompt, reply) of `answers` is typed, in order,
        when its prompt shows."""
        pending = list(answers or [])
        master, slave = pty.openpty()
        try:
            process = subprocess.Popen([CLI, *args], stdin=slave, stdout=slave, stderr=slave, env=self.env,
                                       start_new_session=True)
        finally:
            os.close(slave)
        output = b""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # EIO: every slave end is closed
                        break
                    if not chunk:
                        break
                    output += chunk
                    if pending and pending[0][0].encode() in output:
                        os.write(master, pending.pop(0)[1].encode())
                elif process.poll() is not None:
                    break
            else:
                process.kill()
            status = process.wait(10)
        finally:
            os.close(master)
        return status, output.decode(errors="replace")

    def saved_auths(self) -> dict[str, dict[str, str]]:
        path = self.config_dir / "config.json"
        if not path.exists():
            return {}
        return dict(json.loads(path.read_text()).get("auths") or {})


@pytest.fixture
def cli(daemon: Dockyardd, tmp_path: Path) -> Iterator[Cli]:  # noqa: F811 - the imported fixture
    c = Cli(daemon, tmp_path / "config")
    c.made: list[str] = []  # type: ignore[attr-defined]
    yield c
    for name in c.made:  # type: ignore[attr-defined]
        c("rmi", "--force", name)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[CliRegistry]:
    reg = CliRegistry(tmp_path / "registry")
    yield reg
    reg.stop()


def _tag(cli: Cli, name: str) -> None:
    r = cli("tag", "busybox", name)
    assert r.returncode == 0, r
    cli.made.append(name)  # type: ignore[attr-defined]


def test_registry_serve_and_gc_help_need_no_daemon(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKYARD_HOST": f"unix://{tmp_path}/no-daemon.sock", "DOCKYARD_AUTOSTART": "1"}
    r = subprocess.run([CLI, "registry", "serve", "--help"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0 and "--addr" in r.stdout and "--htpasswd" in r.stdout, r
    (tmp_path / "root").mkdir()
    r = subprocess.run([CLI, "registry", "garbage-collect", "--root", str(tmp_path / "root"), "--dry-run"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0 and "0 blob(s) unreferenced" in r.stdout, r
    r = subprocess.run([CLI, "registry", "serve"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 2 and "--root" in r.stderr, r
    r = subprocess.run([CLI, "registry", "nothing"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 125 and "garbage-collect, serve" in r.stderr, r
    assert not (tmp_path / "no-daemon.sock").exists()  # nothing was auto-started


def test_push_remove_pull_plain_output(cli: Cli, registry: CliRegistry) -> None:
    name = f"{registry.host}/cli/busybox:1"
    _tag(cli, name)
    r = cli("push", name)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0] == f"The push refers to repository [{registry.host}/cli/busybox]", r
    assert any(line.endswith(": Pushed") for line in lines), r
    assert lines[-1].startswith("1: digest: sha256:") and " size: " in lines[-1], r
    assert "Pushing" not in r.stdout and "\r" not in r.stderr, r  # no byte counts off a terminal
    assert cli("rmi", name).returncode == 0
    r = cli("pull", name)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].startswith("1: Pulling from ") and lines[0].endswith("cli/busybox"), r
    assert any(line.endswith(": Download complete") for line in lines), r
    assert lines[-2].startswith("Digest: sha256:") and lines[-1] == f"Status: Downloaded newer image for {name}", r
    assert "Downloading" not in r.stdout and "\r" not in r.stderr, r
    r = cli("image", "inspect", "--format", "{{json .RepoDigests}}", name)
    assert r.returncode == 0 and f"{registry.host}/cli/busybox@sha256:" in r.stdout, r
    r = cli("pull", name)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == f"Status: Image is up to date for {name}", r
    r = cli("pull", "-q", name)
    assert r.returncode == 0 and r.stdout == f"{name}\n", r


def test_pull_and_push_errors(cli: Cli, registry: CliRegistry) -> None:
    name = f"{registry.host}/cli/errors:1"
    _tag(cli, name)
    assert cli("push", name).returncode == 0
    r = cli("pull", f"{registry.host}/cli/errors:missing")
    assert r.returncode == 1 and r.stderr.startswith("Error response from daemon: manifest for "), r
    assert r.stderr.rstrip().endswith("not found: manifest unknown"), r  # the registry's MANIFEST_UNKNOWN
    r = cli("pull", f"{registry.host}/cli/nothing-here:1")
    assert r.returncode == 1 and "unknown" in r.stderr.lower(), r
    r = cli("pull", f"{registry.host}/Bad..Name:1")
    assert r.returncode == 1 and "invalid reference format" in r.stderr, r
    r = cli("push", f"{registry.host}/cli/absent:1")
    assert r.returncode == 1 and "No such image" in r.stderr, r
    closed = _free_port()
    other = f"127.0.0.1:{closed}/cli/errors:1"
    _tag(cli, other)
    r = cli("push", other)
    assert r.returncode == 1 and "cannot reach registry" in r.stderr, r


def _unique_image(cli: Cli, tmp_path: Path, name: str) -> None:
    """An image whose one layer (3 MiB of random bytes) no other image has: a pull downloads it."""
    archive = tmp_path / "layer.tar"
    with tarfile.open(archive, "w") as tar:
        data = os.urandom(3 << 20)
        info = tarfile.TarInfo("random.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    r = cli("import", str(archive), name)
    assert r.returncode == 0, r
    cli.made.append(name)  # type: ignore[attr-defined]


def test_progress_bars_on_a_terminal(cli: Cli, registry: CliRegistry, tmp_path: Path) -> None:
    name = f"{registry.host}/cli/tty:1"
    _unique_image(cli, tmp_path, name)
    status, out = cli.on_terminal("push", name)
    assert status == 0, out
    assert f"\rPushing {name} [" in out and "\x1b[K" in out and "Pushed" in out and "digest: sha256:" in out, out
    assert cli("rmi", name).returncode == 0
    status, out = cli.on_terminal("pull", name)
    assert status == 0, out
    assert f"\rPulling {registry.host}/cli/tty:1 [" in out and "==" in out, out
    assert f"Status: Downloaded newer image for {name}" in out and "Downloading" not in out, out


def test_login_push_pull_logout_with_htpasswd(cli: Cli, tmp_path: Path) -> None:
    bcrypt = pytest.importorskip("bcrypt")
    users = tmp_path / "htpasswd"
    users.write_bytes(b"alice:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)) + b"\n")
    reg = CliRegistry(tmp_path / "registry", ["--auth", "htpasswd", "--htpasswd", str(users)])
    try:
        name = f"{reg.host}/alice/bb:1"
        _tag(cli, name)
        r = cli("push", name)
        assert r.returncode == 1 and f"authentication required (docker login {reg.host})" in r.stderr, r

        r = cli("login", "-u", "alice", "--password-stdin", reg.host, input="wrong\n")
        assert r.returncode == 1 and "401 Unauthorized" in r.stderr and "Login Succeeded" not in r.stdout, r
        assert cli.saved_auths() == {}
        r = cli("login", "-u", "alice", reg.host)  # no password and no terminal
        assert r.returncode == 1 and "non TTY" in r.stderr, r
        r = cli("login", "--password-stdin", reg.host, input="s3cret\n")
        assert r.returncode == 1 and "--username" in r.stderr, r

        r = cli("login", "-u", "alice", "--password-stdin", f"http://{reg.host}/", input="s3cret\n")
        assert r.returncode == 0 and r.stdout == "Login Succeeded\n", r
        config = cli.config_dir / "config.json"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert cli.saved_auths() == {reg.host: {"auth": base64.b64encode(b"alice:s3cret").decode()}}

        r = cli("push", name)
        assert r.returncode == 0 and "digest: sha256:" in r.stdout, r
        assert cli("rmi", name).returncode == 0
        r = cli("pull", name)
        assert r.returncode == 0 and f"Status: Downloaded newer image for {name}" in r.stdout, r

        r = cli("logout", reg.host)
        assert r.returncode == 0 and r.stdout == f"Removing login credentials for {reg.host}\n", r
        assert cli.saved_auths() == {}
        r = cli("logout", reg.host)
        assert r.returncode == 0 and r.stdout == f"Not logged in to {reg.host}\n", r
        assert cli("rmi", name).returncode == 0
        r = cli("pull", name)
        assert r.returncode == 1 and "pull access denied" in r.stderr and "may require 'docker login'" in r.stderr, r

        r = cli("login", "-u", "alice", "-p", "s3cret", reg.host)
        assert r.returncode == 0 and "--password-stdin" in r.stderr, r
        assert cli("logout", reg.host).returncode == 0

        status, out = cli.on_terminal("login", "-u", "alice", reg.host, answers=[("Password:", "s3cret\n")])
        assert status == 0 and "Login Succeeded" in out and "s3cret" not in out, out  # not echoed
        assert list(cli.saved_auths()) == [reg.host]
        status, out = cli.on_terminal("login", reg.host, answers=[("Username (alice):", "\n"), ("Password:", "bad\n")])
        assert status == 1 and "401 Unauthorized" in out, out  # the saved user is offered; a wrong password
        assert list(cli.saved_auths()) == [reg.host]  # a failed login keeps what was saved
        assert cli("logout", reg.host).returncode == 0
    finally:
        reg.stop()
