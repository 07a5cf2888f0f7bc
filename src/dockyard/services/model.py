"""The engine's container-create types, and their translation from Docker's API JSON.

Docker JSON parsing lives here (``from_docker``) because the services receive Docker-shaped
dicts today; the API layer may call it directly.  A field the engine cannot honour raises
NotImplementedFeature naming the field when it is set to a non-default value.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import InvalidArgument, NotImplementedFeature


@dataclass
class ContainerConfig:
    image: str = ""
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    open_stdin: bool = False
    stop_signal: str = ""
    stop_timeout: int | None = None
    exposed_ports: dict[str, Any] = field(default_factory=dict)
    volumes: dict[str, Any] = field(default_factory=dict)
    healthcheck: dict[str, Any] | None = None

    _DOCKER = {"Image": "image", "Cmd": "cmd", "Entrypoint": "entrypoint", "Env": "env",
               "WorkingDir": "working_dir", "User": "user", "Labels": "labels", "Hostname": "hostname",
               "Domainname": "domainname", "Tty": "tty", "OpenStdin": "open_stdin",
               "StopSignal": "stop_signal", "StopTimeout": "stop_timeout", "ExposedPorts": "exposed_ports",
               "Volumes": "volumes", "Healthcheck": "healthcheck"}
    _IGNORED = ("AttachStdin", "AttachStdout", "AttachStderr", "StdinOnce", "NetworkDisabled",
                "MacAddress", "OnBuild", "ArgsEscaped", "Shell")

    @classmethod
    def from_docker(cls, doc: dict[str, Any] | None) -> ContainerConfig:
        return _from_docker(cls, doc or {}, cls._DOCKER, cls._IGNORED, "Config")


@dataclass
class HostConfig:
    binds: list[str] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    tmpfs: dict[str, str] = field(default_factory=dict)
    memory: int = 0
    memory_swap: int = 0
    memory_reservation: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpu_quota: int = 0
    cpu_period: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    pids_limit: int | None = None
    blkio_weight: int = 0
    ulimits: list[dict[str, Any]] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    readonly_rootfs: bool = False
    security_opt: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    oom_score_adj: int = 0
    shm_size: int = 0
    network_mode: str = ""
    ipc_mode: str = ""
    pid_mode: str = ""
    uts_mode: str = ""
    init: bool | None = None
    restart_policy: dict[str, Any] = field(default_factory=dict)
    auto_remove: bool = False
    log_config: dict[str, Any] = field(default_factory=dict)
    devices: list[dict[str, Any]] = field(default_factory=list)
    device_cgroup_rules: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    group_add: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    console_size: list[int] = field(default_factory=list)  # [height, width] of the tty at start
    volumes_from: list[str] = field(default_factory=list)  # resolved by the container service
    volume_driver: str = ""

    _DOCKER = {"Binds": "binds", "Mounts": "mounts", "Tmpfs": "tmpfs", "Memory": "memory",
               "MemorySwap": "memory_swap", "MemoryReservation": "memory_reservation",
               "NanoCpus": "nano_cpus", "CpuShares": "cpu_shares", "CpuQuota": "cpu_quota",
               "CpuPeriod": "cpu_period", "CpusetCpus": "cpuset_cpus", "CpusetMems": "cpuset_mems",
               "PidsLimit": "pids_limit", "BlkioWeight": "blkio_weight", "Ulimits": "ulimits",
               "CapAdd": "cap_add", "CapDrop": "cap_drop", "Privileged": "privileged",
               "ReadonlyRootfs": "readonly_rootfs", "SecurityOpt": "security_opt", "Sysctls": "sysctls",
               "OomScoreAdj": "oom_score_adj", "ShmSize": "shm_size", "NetworkMode": "network_mode",
               "IpcMode": "ipc_mode", "PidMode": "pid_mode", "UTSMode": "uts_mode", "Init": "init",
               "RestartPolicy": "restart_policy", "AutoRemove": "auto_remove", "LogConfig": "log_config",
               "Devices": "devices", "DeviceCgroupRules": "device_cgroup_rules", "Links": "links", "GroupAdd": "group_add", "Dns": "dns", "DnsOptions": "dns_options",
               "DnsSearch": "dns_search", "ExtraHosts": "extra_hosts", "ConsoleSize": "console_size",
               "VolumesFrom": "volumes_from", "VolumeDriver": "volume_driver"}
    _IGNORED = ("PortBindings", "PublishAllPorts", "ContainerIDFile",
                "Runtime", "Isolation", "CgroupnsMode", "Cgroup", "CgroupParent",
                "MaskedPaths", "ReadonlyPaths", "Annotations", "KernelMemory", "KernelMemoryTCP",
                "MemorySwappiness", "OomKillDisable", "BlkioWeightDevice", "BlkioDeviceReadBps",
                "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps", "DeviceRequests",
                "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpuCount",
                "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth", "UsernsMode")

    @classmethod
    def from_docker(cls, doc: dict[str, Any] | None) -> HostConfig:
        return _from_docker(cls, doc or {}, cls._DOCKER, cls._IGNORED, "HostConfig")


def _from_docker(cls: Any, doc: dict[str, Any], names: dict[str, str], ignored: tuple[str, ...],
                 where: str) -> Any:
    """Known keys become fields; listed-but-unsupported keys must hold an empty/default value."""
    defaults = cls()
    values: dict[str, Any] = {}
    for key, value in doc.items():
        if key in names:
            attr = names[key]
            if value is None:
                continue
            if not isinstance(value, type(getattr(defaults, attr))) and getattr(defaults, attr) is not None:
                if not (isinstance(getattr(defaults, attr), int) and isinstance(value, int)):
                    raise InvalidArgument(f"{where}.{key}: unexpected type {type(value).__name__}")
            values[attr] = value
        elif value in (None, "", 0, False, [], {}) or key in ("Runtime", "ConsoleSize", "Isolation", "CgroupnsMode",
                                                              "AttachStdin", "AttachStdout", "AttachStderr",
                                                              "StdinOnce", "ArgsEscaped", "PortBindings",
                                                              "PublishAllPorts", "MemorySwappiness"):
            continue
        else:
            raise NotImplementedFeature(f"{where}.{key} is not supported")
    return dataclasses.replace(defaults, **values)


# --- mount specifications (shared by specgen and the volume planning) ------------------------

PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


def check_target(target: str, what: str) -> str:
    if not target.startswith("/"):
        raise InvalidArgument(f"{what}: invalid mount destination {target!r}: must be an absolute path")
    if os.path.normpath(target) == "/":
        raise InvalidArgument(f"{what}: invalid mount destination '/'")
    return os.path.normpath(target)



@dataclass(frozen=True)
class BindSpec:
    """One HostConfig.Binds entry, `source:target[:mode,...]`; a source that is not an absolute
    path names a volume."""
    source: str
    target: str
    mode: str
    readonly: bool
    propagation: str
    nocopy: bool

    @property
    def is_volume(self) -> bool:
        return not self.source.startswith("/")


def parse_bind(spec: str) -> BindSpec:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InvalidArgument(f"HostConfig.Binds: invalid volume specification {spec!r}")
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else ""
    readonly, propagation, nocopy = False, "", False
    for word in (mode.split(",") if mode else []):
        if word in ("ro", "rw"):
            readonly = word == "ro"
        elif word in PROPAGATIONS:
            propagation = word
        elif word == "nocopy":
            nocopy = True
        elif word in ("z", "Z", "consistent", "cached", "delegated"):
            continue  # SELinux relabelling / macOS hints: nothing to do here
        else:
            raise InvalidArgument(f"HostConfig.Binds: invalid mode {word!r} in {spec!r}")
    if not source.startswith("/") and propagation:
        raise InvalidArgument(f"HostConfig.Binds: propagation mode {propagation!r} is for bind mounts only ({spec!r})")
    if source.startswith("/") and nocopy:
        raise InvalidArgument(f"HostConfig.Binds: nocopy is for volumes only ({spec!r})")
    return BindSpec(source, check_target(target, "HostConfig.Binds"), mode, readonly, propagation, nocopy)
