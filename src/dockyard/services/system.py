"""Facts about the host and the engine for `docker version` and `docker info`."""

from __future__ import annotations

import os
import platform
import time
import uuid
from dataclasses import dataclass, field

from dockyard import __version__

GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x"}
NETWORK_NOTE = ("the default bridge network is disabled (--bridge none): containers on the default network "
                "get only a loopback interface")


@dataclass
class EngineInfo:
    id: str
    version: str
    kernel_version: str
    os: str
    arch: str
    operating_system: str
    os_version: str
    ncpu: int
    mem_total: int
    name: str
    cgroup_version: str
    data_root: str
    exec_root: str
    default_runtime: str
    runtimes: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _os_release() -> tuple[str, str]:
    values = {}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                values[key] = value.strip('"')
    except OSError:
        pass
    return values.get("PRETTY_NAME", "Linux"), values.get("VERSION_ID", "")


def mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def engine_id(data_root: str) -> str:
    """A stable engine ID kept in <data-root>/engine-id, like dockerd's."""
    path = os.path.join(data_root, "engine-id")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        value = str(uuid.uuid4())
        os.makedirs(data_root, exist_ok=True)
        with open(path, "w") as f:
            f.write(value)
        return value


class SystemService:
    def __init__(self, data_root: str, exec_root: str, default_runtime: str, runtimes: dict[str, str]) -> None:
        self.data_root = data_root
        self.exec_root = exec_root
        self.default_runtime = default_runtime
        self.runtimes = runtimes
        self.started_at = time.time()
        self.id = engine_id(data_root)
        self.bridge = ""  # the daemon's --bridge (set by the server)

    def info(self) -> EngineInfo:
        uname = os.uname()
        pretty, version = _os_release()
        return EngineInfo(
            id=self.id, version=__version__, kernel_version=uname.release, os="linux",
            arch=GO_ARCH.get(uname.machine, uname.machine), operating_system=pretty, os_version=version,
            ncpu=os.cpu_count() or 1, mem_total=mem_total(), name=platform.node(), cgroup_version=cgroup_version(),
            data_root=self.data_root, exec_root=self.exec_root, default_runtime=self.default_runtime,
            runtimes=dict(self.runtimes), warnings=[f"WARNING: {NETWORK_NOTE}"] if self.bridge == "none" else [])
