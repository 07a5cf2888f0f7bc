"""A private Docker engine for the image interoperability tests.

It touches nothing of the machine's own Docker set-up: its own data root, exec root and
socket under a temporary directory, no bridge and no iptables rules (so no traffic leaves
loopback). It is stopped by its PID, and whatever it left mounted under its directory is
unmounted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time


class PrivateDockerd:
    def __init__(self, base: str) -> None:
        self.base = base
        self.socket = os.path.join(base, "docker.sock")
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "0"}
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("dockerd") is not None and shutil.which("docker") is not None

    def start(self, timeout: float = 60) -> None:
        os.makedirs(os.path.join(self.base, "data"), exist_ok=True)
        os.makedirs(os.path.join(self.base, "exec"), exist_ok=True)
        log = open(os.path.join(self.base, "dockerd.log"), "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", os.path.join(self.base, "data"), "--exec-root", os.path.join(self.base, "exec"),
             "-H", f"unix://{self.socket}", "--pidfile", os.path.join(self.base, "dockerd.pid"),
             "--iptables=false", "--ip6tables=false", "--bridge=none"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: see {self.base}/dockerd.log")
            if subprocess.run(["docker", "version"], env=self.env, capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"dockerd did not start in {timeout}s: see {self.base}/dockerd.log")

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {result.stderr}")
        return result

    def _descendants(self) -> list[tuple[int, str]]:
        """(pid, command) of every live process under dockerd."""
        parents: dict[int, int] = {}
        names: dict[int, str] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    data = fh.read()
            except OSError:
                continue
            rest = data[data.rindex(")") + 2:].split()
            if rest[0] in ("Z", "X"):
                continue
            parents[int(entry)] = int(rest[1])
            names[int(entry)] = data[data.index("(") + 1:data.rindex(")")]
        if self.proc is None:
            return []
        found, frontier = [], [self.proc.pid]
        while frontier:
            pid = frontier.pop()
            for child, parent in parents.items():
                if parent == pid:
                    found.append((child, names[child]))
                    frontier.append(child)
        return found

    def wait_idle(self, timeout: float = 30) -> None:
        """Wait until no container shim runs under the engine (containers gone, not just exited)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any("shim" in name for _, name in self._descendants()):
                return
            time.sleep(0.1)

    def stop(self) -> None:
        children = [pid for pid, _ in self._descendants()]
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        # its containerd (and any shim) go down with it; make sure, by PID
        deadline = time.monotonic() + 10
        while children and time.monotonic() < deadline:
            children = [pid for pid in children if os.path.exists(f"/proc/{pid}")]
            time.sleep(0.1)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._unmount_below()

    def _unmount_below(self) -> None:
        with open("/proc/self/mountinfo") as fh:
            points = [line.split()[4] for line in fh]
        for point in sorted((p for p in points if p.startswith(self.base + "/")), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
