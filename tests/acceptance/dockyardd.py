"""dockyardd as a subprocess on a temporary socket, with its own data and exec roots.

    daemon = start_dockyardd(tmp_dir)
    try:
        print(daemon.docker("run", "--rm", "busybox", "echo", "hi").stdout)
    finally:
        problems = stop_dockyardd(daemon)

`stop_dockyardd` stops the daemon by its PID (SIGTERM, then SIGKILL), then what it leaves on
purpose (containers outlive the daemon): the supervisor and its descendants by PID, the
containers' cgroups (by their IDs under the `dockyard` parent), and every mount under the
temporary directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from docker_engine import (  # noqa: E402
    DockerEngine,
    EngineError,
    _descendants,
    _kill,
    _ping,
    _remove_cgroup_trees,
    _unmount_all,
)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
CGROUP_PARENT = "dockyard"


def dockyardd_command() -> list[str]:
    beside = Path(sys.executable).parent / "dockyardd"
    if os.access(beside, os.X_OK):
        return [str(beside)]
    return [sys.executable, "-m", "dockyard.daemon.main"]


@dataclass
class Dockyardd(DockerEngine):
    """A running dockyardd; the docker CLI and docker-py helpers of DockerEngine work on it."""

    @property
    def socket(self) -> Path:
        return self.dir / "dockyard.sock"

    @property
    def log(self) -> Path:
        return self.dir / "dockyardd.log"

    @property
    def data_root(self) -> Path:
        return self.dir / "data"

    @property
    def exec_root(self) -> Path:
        return self.dir / "exec"

    @property
    def pidfile(self) -> Path:
        return self.dir / "dockyardd.pid"

    def supervisor_pid(self) -> int | None:
        try:
            return int((self.exec_root / "shim" / "shim.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def container_ids(self) -> list[str]:
        try:
            return sorted(os.listdir(self.data_root / "containers"))
        except FileNotFoundError:
            return []


def launch(daemon_dir: Path, extra_args: list[str] | None = None, timeout: float = START_TIMEOUT,
           netns: str | None = None) -> Dockyardd:
    """Start dockyardd on `daemon_dir` (which may hold the state of an earlier run) and wait for /_ping.

    With `netns` (a name under /run/netns) it runs in that network namespace (entered with
    nsenter, which leaves /sys and the cgroup mounts as they are)."""
    daemon_dir.mkdir(parents=True, exist_ok=True)
    (daemon_dir / "cli").mkdir(exist_ok=True)
    sock = daemon_dir / "dockyard.sock"
    argv = [*dockyardd_command(), "-H", f"unix://{sock}", "--data-root", str(daemon_dir / "data"),
            "--exec-root", str(daemon_dir / "exec"), "--pidfile", str(daemon_dir / "dockyardd.pid"),
            "--log-level", "debug", *(extra_args or [])]
    if netns:
        argv = ["nsenter", f"--net=/run/netns/{netns}", *argv]
    elif not any(a in ("-b", "--bridge") or a.startswith("--bridge=") for a in (extra_args or [])):
        # in the machine's own namespace a test daemon makes no bridge (loopback-only rule)
        argv += ["--bridge", "none"]
    log = open(daemon_dir / "dockyardd.log", "ab")
    try:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()
    daemon = Dockyardd(daemon_dir, process, CGROUP_PARENT)
    deadline = time.monotonic() + timeout
    while not _ping(sock):
        if process.poll() is not None or time.monotonic() > deadline:
            _kill([process.pid])
            process.wait(10)
            raise EngineError(f"dockyardd did not answer on {sock}:\n{daemon.log_tail()}")
        time.sleep(0.05)
    return daemon


def start_dockyardd(daemon_dir: Path, extra_args: list[str] | None = None, netns: str | None = None) -> Dockyardd:
    return launch(daemon_dir, extra_args, netns=netns)


def kill_daemon(daemon: Dockyardd, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
    """Signal the daemon by its PID and reap it; SIGKILL when it does not go. Returns its exit status."""
    proc = daemon.process
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def stop_dockyardd(daemon: Dockyardd, remove_containers: bool = True) -> list[str]:
    """Stop the daemon, its supervisor and containers; remove their mounts and cgroups. Returns problems."""
    problems: list[str] = []
    if remove_containers and daemon.process.poll() is None and _ping(daemon.socket):
        ids = daemon.docker("ps", "--all", "--quiet", "--no-trunc", timeout=60).stdout.split()
        if ids:
            result = daemon.docker("rm", "--force", *ids, timeout=60)
            if not result.ok:
                problems.append(f"docker rm --force failed:\n{result}")
    status = kill_daemon(daemon)
    if status not in (0, -signal.SIGTERM):
        problems.append(f"dockyardd exited with {status} on SIGTERM:\n{daemon.log_tail()}")
    supervisor = daemon.supervisor_pid()
    if supervisor is not None and os.path.exists(f"/proc/{supervisor}"):
        _kill(_descendants(supervisor))
        _kill([supervisor])
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{supervisor}/stat") and time.monotonic() < deadline:
            try:
                with open(f"/proc/{supervisor}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        break
            except OSError:
                break
            time.sleep(0.05)
    for cid in daemon.container_ids():
        problems += _remove_cgroup_trees(f"{CGROUP_PARENT}/{cid}")
    stuck = _unmount_all(daemon.dir)
    if stuck:
        problems.append(f"mounts that stay under {daemon.dir}: {stuck}")
    return problems
