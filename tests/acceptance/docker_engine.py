"""A private real Docker engine for acceptance tests, and a terminal to drive `docker -it` with.

    engine = start_engine(tmp_dir, runtimes={"dockyard": "/path/to/dockyard-runtime"})
    try:
        import_busybox(engine)
        print(engine.docker("run", "--rm", "busybox", "echo", "hi").stdout)
    finally:
        problems = stop_engine(engine)

The engine touches nothing of the machine's own Docker set-up: its data root, exec root, socket,
pid file, configuration and CLI configuration all live under one directory; it creates no
bridge and no iptables rules, and its containers' cgroups sit under a parent cgroup of its own
(dockyard-test-<pid>-<directory name>). `stop_engine` stops it by its PID and then removes what it may leave: its
processes, every mount under its directory (netns and overlay mounts) and its cgroups.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from helpers.bundle import busybox_template  # noqa: E402

CGROUP_ROOT = Path("/sys/fs/cgroup")
# containerd's shims put their sockets here whatever the engine's directories. After the engine
# stops, the sockets that appeared meanwhile and that nobody listens on any more (a killed shim
# leaves its socket) are removed, and so are the directories if the engine created them.
SHIM_SOCKET_DIR = Path("/run/containerd/s")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class EngineError(Exception):
    """The engine could not be started, used or stopped; the message includes its log's tail."""


@dataclass
class DockerResult:
    """A finished docker CLI call; str() shows everything needed to understand a failure."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def __str__(self) -> str:
        return (f"$ {shlex.join(self.argv)}\n-> exit {self.returncode} in {self.seconds:.1f}s\n"
                f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}")

    def __repr__(self) -> str:
        # pytest shows an assertion message object by its repr, cut to 240 characters: keep
        # the exit code and the end of stderr in the first line.
        return f"<docker exit {self.returncode}: {self.stderr.strip()[-150:]!r} ({shlex.join(self.argv[1:])})>"

    def check(self) -> DockerResult:
        if not self.ok:
            raise AssertionError(f"docker failed:\n{self}")
        return self


@dataclass
class DockerEngine:
    dir: Path
    process: subprocess.Popen[bytes]
    cgroup_parent: str
    runtimes: dict[str, str] = field(default_factory=dict)
    shim_sockets_before: set[str] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def socket(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def log(self) -> Path:
        return self.dir / "dockerd.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(DOCKER_HOST=self.host, DOCKER_CONFIG=str(self.dir / "cli"),
                   DOCKER_CLI_HINTS="false")
        for name in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
            env.pop(name, None)
        return env

    def docker(self, *args: str, input: str | bytes | None = None, timeout: float = 120) -> DockerResult:
        """Run the docker CLI against this engine; never raises for a non-zero exit."""
        argv = [docker_cli(), *args]
        start = time.monotonic()
        try:
            proc = subprocess.run(argv, env=self.env(), capture_output=True, timeout=timeout,
                                  input=input.encode() if isinstance(input, str) else input,
                                  stdin=subprocess.DEVNULL if input is None else None)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace")
            err = (e.stderr or b"").decode(errors="replace")
            raise AssertionError(f"docker timed out after {timeout}s:\n"
                                 f"{DockerResult(argv, -1, out, err, timeout)}\n"
                                 f"--- dockerd log (tail) ---\n{self.log_tail()}") from None
        return DockerResult(argv, proc.returncode, proc.stdout.decode(errors="replace"),
                            proc.stderr.decode(errors="replace"), time.monotonic() - start)

    def inspect(self, name: str) -> dict[str, Any]:
        result = self.docker("inspect", name).check()
        found: list[dict[str, Any]] = json.loads(result.stdout)
        return found[0]

    def client(self) -> Any:
        """A docker-py client for this engine; close it when done."""
        import docker

        return docker.DockerClient(base_url=self.host, timeout=120)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"(no log: {e})"


def docker_cli() -> str:
    found = shutil.which("docker")
    if found is None:
        raise EngineError("the docker CLI is not installed")
    return found


def _ping(sock_path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(sock_path))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0] and reply.endswith(b"OK")


def start_engine(dir: str | os.PathLike[str], *, runtimes: Mapping[str, str] | None = None,
                 extra_args: Sequence[str] = (), timeout: float = START_TIMEOUT,
                 netns: str | None = None) -> DockerEngine:
    """Start dockerd with all its state under `dir` and wait until it answers /_ping.

    `runtimes` maps names to absolute paths of runc-compatible executables (--add-runtime).
    With `netns` (a name under /run/netns) it runs inside that network namespace, with its
    bridge and iptables rules (there only); otherwise it makes neither.
    """
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise EngineError("dockerd is not installed (Debian: apt-get install docker.io)")
    base = Path(dir).absolute()
    for sub in ("data", "exec", "cli"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    # Our own configuration file, so that a machine-wide /etc/docker/daemon.json cannot apply;
    # it also moves the engine's identity key, which would otherwise be /etc/docker/key.json.
    (base / "daemon.json").write_text(json.dumps({"deprecated-key-path": str(base / "key.json")}) + "\n")
    (base / "cli" / "config.json").write_text("{}\n")
    cgroup_parent = f"dockyard-test-{os.getpid()}-{base.name}"
    argv = [dockerd, "--config-file", str(base / "daemon.json"),
            "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
            "-H", f"unix://{base / 'docker.sock'}", "--pidfile", str(base / "dockerd.pid"),
            "--cgroup-parent", f"/{cgroup_parent}"]
    if netns:
        argv = ["nsenter", f"--net=/run/netns/{netns}", *argv, "--ip6tables=false"]
    else:
        argv += ["--iptables=false", "--ip6tables=false", "--bridge=none"]
    for name, path in (runtimes or {}).items():
        argv.append(f"--add-runtime={name}={path}")
    argv += list(extra_args)
    with open(base / "dockerd.log", "ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    engine = DockerEngine(base, process, cgroup_parent, dict(runtimes or {}), _shim_sockets())
    deadline = time.monotonic() + timeout
    while not _ping(engine.socket):
        if process.poll() is not None or time.monotonic() > deadline:
            why = f"exited {process.returncode}" if process.returncode is not None else f"no answer in {timeout}s"
            stop_engine(engine)
            raise EngineError(f"dockerd {why}: {shlex.join(argv)}\n--- dockerd.log ---\n{engine.log_tail()}")
        time.sleep(0.1)
    return engine


def import_busybox(engine: DockerEngine, ref: str = "busybox:latest",
                   changes: Iterable[str] = ('CMD ["sh"]',)) -> str:
    """Import the tests' busybox rootfs (helpers.bundle) as image `ref`; return the image id."""
    tar = subprocess.run(["tar", "-C", str(busybox_template()), "--numeric-owner", "-cf", "-", "."],
                         capture_output=True, check=True).stdout
    args = ["import"]
    for change in changes:
        args += ["--change", change]
    result = engine.docker(*args, "-", ref, input=tar).check()
    return result.stdout.strip()


# ---------------------------------------------------------------------------- stopping


def _children(pid: int) -> list[int]:
    from leaks import stat_fields

    found = []
    for entry in os.listdir("/proc"):
        fields = stat_fields(entry) if entry.isdigit() else None
        if fields is not None and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _engine_daemons(engine_dir: Path) -> list[int]:
    """containerd and its shims serving this engine: their command lines name its directory."""
    needle = str(engine_dir).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0]).startswith(b"containerd") and any(needle in a for a in argv):
            found.append(int(entry))
    return found


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def _unmount_all(path: Path) -> list[str]:
    """Detach every mount at or under `path`, deepest first; return those that stay."""
    for _ in range(3):
        points = _mounts_under(path)
        if not points:
            return []
        for point in sorted(set(points), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
    return _mounts_under(path)


def _remove_cgroup_trees(name: str) -> list[str]:
    """Remove /sys/fs/cgroup/*/NAME and everything below it (killing what still runs there);
    return what had to be killed and what could not be removed."""
    stuck = []
    if not CGROUP_ROOT.is_dir():
        return stuck
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / name
        if hierarchy.is_symlink() or not top.is_dir():
            continue
        dirs = [Path(dp) for dp, _, _ in os.walk(top)]
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            killed = _kill_cgroup_tasks(d)
            if killed:
                stuck.append(f"processes still in {d}, killed: {killed}")
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                stuck.append(f"{d} ({errno.errorcode.get(e.errno or 0, e.errno)})")
    return stuck


def _kill_cgroup_tasks(cgroup: Path) -> list[int]:
    try:
        pids = [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []
    if pids:
        _kill(pids)
        time.sleep(0.2)
    return pids


def stop_engine(engine: DockerEngine, timeout: float = STOP_TIMEOUT) -> list[str]:
    """Stop dockerd by its PID and remove everything it left; return what could not be removed.

    SIGTERM first (dockerd stops its containers and its containerd); SIGKILL for anything of
    the engine's still alive after `timeout`. Then the engine's mounts and cgroups go.
    """
    problems: list[str] = []
    proc = engine.process
    if proc.poll() is None and _ping(engine.socket):
        # Removing the containers first spares dockerd's shutdown their stop grace periods.
        try:
            ids = engine.docker("ps", "--all", "--quiet", timeout=60).stdout.split()
            if ids:
                engine.docker("rm", "--force", *ids, timeout=120)
        except AssertionError as e:
            problems.append(f"could not remove the containers before stopping: {e}")
    family = _descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            problems.append(f"dockerd (pid {proc.pid}) ignored SIGTERM for {timeout}s: killed")
            family += _descendants(proc.pid)
            _kill([proc.pid])
            proc.wait(10)
    # containerd and the shims: whatever of the engine is still running after dockerd.
    deadline = time.monotonic() + 10
    while True:
        alive = [p for p in set(family + _engine_daemons(engine.dir)) if _alive(p)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if alive:
        problems.append(f"engine processes still alive after dockerd stopped, killed: {sorted(alive)}")
        _kill(alive)
        time.sleep(0.3)
    problems += [f"mount left: {m}" for m in _unmount_all(engine.dir)]
    problems += [f"cgroup left: {c}" for c in _remove_cgroup_trees(engine.cgroup_parent)]
    _remove_stale_shim_sockets(engine.shim_sockets_before)
    return problems


def _shim_sockets() -> set[str] | None:
    """Names in SHIM_SOCKET_DIR, or None if it does not exist."""
    try:
        return set(os.listdir(SHIM_SOCKET_DIR))
    except FileNotFoundError:
        return None


def _remove_stale_shim_sockets(before: set[str] | None) -> None:
    for name in (_shim_sockets() or set()) - (before or set()):
        path = SHIM_SOCKET_DIR / name
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(path))
            except ConnectionRefusedError:
                path.unlink(missing_ok=True)
            except OSError:
                pass
    if before is None:
        for d in (SHIM_SOCKET_DIR, SHIM_SOCKET_DIR.parent):
            try:
                d.rmdir()
            except OSError:
                break


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(")") + 2:].split()[0] not in ("Z", "X")


def remove_engine_dir(engine: DockerEngine) -> None:
    """Delete the engine's state but keep its log (and the directory holding it)."""
    if _mounts_under(engine.dir):
        return
    for sub in ("data", "exec"):
        shutil.rmtree(engine.dir / sub, ignore_errors=True)


# ---------------------------------------------------------------------------- terminal


class Terminal:
    """A command run on a pseudo-terminal, as a person at a terminal would run it.

    `expect` reads until a regular expression matches the output seen so far (after the
    previous match) and returns the match; on timeout it fails with everything it read.
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                 rows: int = 24, cols: int = 80) -> None:
        self.argv = list(argv)
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        try:
            self.process = subprocess.Popen(self.argv, stdin=slave, stdout=slave, stderr=slave,
                                            env=dict(env) if env is not None else None,
                                            start_new_session=True)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self.master = master
        self.output = b""
        self._pos = 0

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def _read(self, timeout: float) -> bool:
        """Read what is there within `timeout`; False at end of output."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError as e:
            if e.errno == errno.EIO:
                return False
            raise
        self.output += chunk
        return bool(chunk)

    def expect(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        more = True
        while True:
            text = self.output.decode(errors="replace")
            match = regex.search(text, self._pos)
            if match:
                self._pos = match.end()
                return match
            left = deadline - time.monotonic()
            if left <= 0 or not more:
                why = f"within {timeout}s" if more else "before the output ended"
                raise AssertionError(f"{pattern!r} did not appear on the terminal of "
                                     f"{shlex.join(self.argv)} {why}; it showed:\n{text!r}")
            more = self._read(min(left, 0.5))

    def wait(self, timeout: float = 30) -> int:
        """Drain the output until the command exits; return its exit code."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        while self._read(0):
            pass
        try:
            return self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{shlex.join(self.argv)} did not exit within {timeout}s; "
                                 f"terminal:\n{self.output.decode(errors='replace')!r}") from None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        os.close(self.master)


# ---------------------------------------------------------------------------- per-test CLI


class DockerCli:
    """The docker CLI on one engine with one runtime, remembering the containers it named.

    `run` and `start` add `--runtime`, a unique `--name` and (for `run`) `--rm`; `cleanup`
    force-removes every container named here, so a failed test leaves nothing running.
    """

    def __init__(self, engine: DockerEngine, runtime: str) -> None:
        self.engine = engine
        self.runtime = runtime
        self.names: list[str] = []

    def __call__(self, *args: str, input: str | bytes | None = None, timeout: float = 120) -> DockerResult:
        return self.engine.docker(*args, input=input, timeout=timeout)

    def new_name(self) -> str:
        name = f"dyt-{os.getpid()}-{len(self.names)}-{time.monotonic_ns() % 10**6}"
        self.names.append(name)
        return name

    def run(self, *args: str, rm: bool = True, input: str | bytes | None = None,
            timeout: float = 120) -> DockerResult:
        """`docker run [--rm] --runtime R --name N ARGS...`; ARGS holds options, image and command."""
        opts = ["--rm"] if rm else []
        if input is not None:
            opts.append("-i")
        return self("run", *opts, "--runtime", self.runtime, "--name", self.new_name(), *args,
                    input=input, timeout=timeout)

    def run_named(self, *args: str, timeout: float = 120) -> tuple[str, DockerResult]:
        """`docker run` without --rm, so the container can be inspected; returns (name, result)."""
        name = self.new_name()
        return name, self("run", "--runtime", self.runtime, "--name", name, *args, timeout=timeout)

    def start(self, *args: str) -> str:
        """`docker run -d ...`; returns the container's name once docker reports it running."""
        name = self.new_name()
        self("run", "-d", "--runtime", self.runtime, "--name", name, *args).check()
        return name

    def inspect(self, name: str) -> dict[str, Any]:
        return self.engine.inspect(name)

    def terminal(self, *args: str) -> Terminal:
        """The docker CLI with ARGS on a pseudo-terminal (for -it)."""
        return Terminal([docker_cli(), *args], env=self.engine.env())

    def cleanup(self) -> None:
        if self.names:
            self("rm", "--force", *self.names, timeout=60)
