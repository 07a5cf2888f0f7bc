"""Container create request -> OCI runtime-spec 1.1 ``config.json``, as Docker (moby) builds it.

Pure translation except for reading the rootfs's /etc/passwd and /etc/group and (privileged,
--device) stat-ing host devices.  ``config``/``host_config`` may be the engine's dataclasses or
Docker API JSON dicts (converted with ``from_docker``, which refuses unsupported fields).

Networking: ``host`` shares the host's network namespace; ``container:<id>`` joins the one
``netns_path`` names; every other mode gets a new namespace, which the network service fills
(veths, addresses, routes) after the runtime made it and before the process starts.
"""
from __future__ import annotations

import json
import os
import platform
import re
import stat
from typing import Any

from dockyard.errors import InvalidArgument, NotImplementedFeature
from dockyard.security.capabilities import CAP_NAMES, last_cap
from dockyard.services import seccomp_default
from dockyard.services.model import PROPAGATIONS as _PROPAGATIONS
from dockyard.services.model import ContainerConfig, HostConfig, parse_bind
from dockyard.services.model import check_target as _check_target
from dockyard.services.userlookup import resolve_user

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
INIT_PATH_IN_CONTAINER = "/sbin/docker-init"
CPU_PERIOD = 100000

DEFAULT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# (type, major, minor, access): the device cgroup rules every unprivileged container gets.
_DEVICE_RULES = (("c", None, None, "m"), ("b", None, None, "m"), ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"),
                 ("c", 1, 7, "rwm"), ("c", 5, 0, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 9, "rwm"),
                 ("c", 5, 1, "rwm"), ("c", 136, None, "rwm"), ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm"))
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
_NAMESPACED_SYSCTL_PREFIXES = ("kernel.msg", "kernel.shm", "fs.mqueue.", "net.")
_NAMESPACED_SYSCTLS = ("kernel.sem", "kernel.domainname", "kernel.hostname")


def build_spec(container_id: str, config: ContainerConfig | dict[str, Any], host_config: HostConfig | dict[str, Any],
               image_config: dict[str, Any], rootfs: str, files: dict[str, str],
               cgroup_parent: str = "/dockyard", netns_path: str | None = None,
               init_path: str | None = None, volumes: list[dict[str, Any]] | None = None,
               joined: dict[str, str] | None = None) -> dict[str, Any]:
    """The OCI spec for one container (see the module docstring); `volumes`: see `_mounts`;
    `joined`: the other containers' namespaces for `--pid`/`--ipc container:<id>` ("pid", "ipc"),
    and "shm": the daemon-side /dev/shm of a shareable container (its own, or the IPC donor's)."""
    if isinstance(config, dict):
        config = ContainerConfig.from_docker(config)
    if isinstance(host_config, dict):
        host_config = HostConfig.from_docker(host_config)
    image_config = image_config or {}
    caps = capabilities(host_config.cap_add, host_config.cap_drop, host_config.privileged)
    security = _security_options(host_config.security_opt)
    hostname = config.hostname or container_id[:12]
    process: dict[str, Any] = {
        "terminal": bool(config.tty),
        "user": resolve_user(rootfs, config.user or image_config.get("User") or "", host_config.group_add),
        "args": _args(config, image_config, host_config, init_path),
        "env": environment(image_config.get("Env") or [], config.env, hostname, config.tty),
        "cwd": _cwd(config, image_config),
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "oomScoreAdj": host_config.oom_score_adj,
        "noNewPrivileges": security["no_new_privileges"],
    }
    rlimits = _rlimits(host_config.ulimits)
    if rlimits:
        process["rlimits"] = rlimits
    size = host_config.console_size
    if config.tty and len(size) == 2 and int(size[0]) > 0 and int(size[1]) > 0:
        # the tty has the client's size from the first instruction on (a later resize would race it)
        process["consoleSize"] = {"height": int(size[0]), "width": int(size[1])}
    linux: dict[str, Any] = {
        "cgroupsPath": f"{cgroup_parent.rstrip('/')}/{container_id}",
        "namespaces": _namespaces(host_config, netns_path, joined or {}),
        "resources": resources(host_config),
    }
    sysctls = _sysctls(host_config.sysctls, host_config.network_mode)
    if host_config.network_mode != "host":
        # moby lets unprivileged processes bind low ports and ping inside a private netns
        sysctls = {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647",
                   **sysctls}
    if sysctls:
        linux["sysctl"] = sysctls
    devices = _devices(host_config, linux["resources"])
    if devices:
        linux["devices"] = devices
    if not host_config.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        profile = security["seccomp"]
        if profile != "unconfined":
            linux["seccomp"] = seccomp_profile(caps, profile)
    spec: dict[str, Any] = {
        "ociVersion": "1.1.0",
        "process": process,
        "root": {"path": rootfs, "readonly": bool(host_config.readonly_rootfs)},
        "mounts": _mounts(host_config, files, init_path, volumes, (joined or {}).get("shm")),
        "linux": linux,
    }
    if host_config.uts_mode != "host":
        spec["hostname"] = hostname
        if config.domainname:
            spec["domainname"] = config.domainname
    stop_signal = config.stop_signal or image_config.get("StopSignal")
    if stop_signal:
        spec["annotations"] = {"org.opencontainers.image.stopSignal": stop_signal}
    return spec


# -- process ---------------------------------------------------------------------------------


def environment(image_env: list[str], user_env: list[str], hostname: str, tty: bool) -> list[str]:
    """PATH, HOSTNAME (and TERM with a tty) overridden by the image's then the user's variables."""
    merged: dict[str, str] = {"PATH": f"PATH={DEFAULT_PATH}", "HOSTNAME": f"HOSTNAME={hostname}"}
    if tty:
        merged["TERM"] = "TERM=xterm"
    for entry in [*image_env, *(user_env or [])]:
        key = entry.split("=", 1)[0]
        if not key:
            raise InvalidArgument(f"invalid environment variable {entry!r}")
        if "=" not in entry:
            continue  # "-e NAME" with NAME unset on the client: nothing to pass
        merged[key] = entry
    return list(merged.values())


def _args(config: ContainerConfig, image: dict[str, Any], host: HostConfig, init_path: str | None) -> list[str]:
    if config.entrypoint is not None:
        entrypoint = [] if config.entrypoint == [""] else list(config.entrypoint)
        cmd = list(config.cmd or [])
    else:
        entrypoint = list(image.get("Entrypoint") or [])
        cmd = list(config.cmd if config.cmd is not None else image.get("Cmd") or [])
    args = entrypoint + cmd
    if not args:
        raise InvalidArgument("no command specified")
    if host.init:
        if not init_path:
            raise InvalidArgument("HostConfig.Init: no init binary is configured (docker-init / tini)")
        args = [INIT_PATH_IN_CONTAINER, "--", *args]
    return args


def _cwd(config: ContainerConfig, image: dict[str, Any]) -> str:
    cwd = config.working_dir or image.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise InvalidArgument(f"the working directory {cwd!r} is invalid, it needs to be an absolute path")
    return os.path.normpath(cwd) if cwd != "/" else "/"


def _rlimits(ulimits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in ulimits:
        name = str(item.get("Name", ""))
        if not name or not name.replace("_", "").isalpha():
            raise InvalidArgument(f"HostConfig.Ulimits: invalid ulimit name {name!r}")
        soft, hard = int(item.get("Soft", 0)), int(item.get("Hard", 0))
        if soft > hard and hard >= 0:
            raise InvalidArgument(f"HostConfig.Ulimits: {name} soft limit {soft} exceeds hard limit {hard}")
        out.append({"type": f"RLIMIT_{name.upper()}", "hard": hard, "soft": soft})
    return out


# -- capabilities and seccomp -------------------------------------------------------------------


def _cap_name(name: str) -> str:
    upper = name.upper()
    if upper == "ALL":
        return upper
    full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if full not in CAP_NAMES:
        raise InvalidArgument(f"unknown capability: {name!r}")
    return full


def all_capabilities() -> list[str]:
    """Every capability this kernel knows, by number."""
    top = last_cap()
    return [name for name, number in sorted(CAP_NAMES.items(), key=lambda kv: kv[1]) if number <= top]


def capabilities(cap_add: list[str], cap_drop: list[str], privileged: bool) -> list[str]:
    """Docker's capability set: ALL in adds wins, then ALL in drops, else defaults - drops + adds."""
    if privileged:
        return all_capabilities()
    adds = [_cap_name(c) for c in cap_add or []]
    drops = [_cap_name(c) for c in cap_drop or []]
    if "ALL" in adds:
        caps = [c for c in all_capabilities() if c not in drops]
    elif "ALL" in drops:
        caps = [c for c in adds if c != "ALL"]
    else:
        caps = [c for c in DEFAULT_CAPS if c not in drops] + adds
    unique: list[str] = []
    for cap in caps:
        if cap not in unique:
            unique.append(cap)
    return unique


def _security_options(options: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {"seccomp": None, "no_new_privileges": False}
    for option in options or []:
        key, sep, value = option.partition("=")
        if not sep:
            key, sep, value = option.partition(":")  # the old "seccomp:unconfined" spelling
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise InvalidArgument(f"HostConfig.SecurityOpt: invalid no-new-privileges value {value!r}")
            result["no_new_privileges"] = value != "false"
        elif key == "seccomp" and sep:
            result["seccomp"] = value if value == "unconfined" else _parse_profile(value)
        elif key == "apparmor" and value == "unconfined" or option in ("label=disable", "label:disable"):
            continue  # no LSM confinement is applied by Dockyard anyway
        else:
            raise NotImplementedFeature(f"HostConfig.SecurityOpt: {option!r} is not supported")
    return result


def _parse_profile(text: str) -> dict[str, Any]:
    try:
        profile = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"HostConfig.SecurityOpt: seccomp profile is not JSON: {exc}") from exc
    if not isinstance(profile, dict):
        raise InvalidArgument("HostConfig.SecurityOpt: seccomp profile must be a JSON object")
    return profile


def _rules_from_docker(profile: dict[str, Any]) -> list[seccomp_default.Rule]:
    rules = []
    for entry in profile.get("syscalls") or []:
        names = tuple(entry.get("names") or ([entry["name"]] if entry.get("name") else []))
        action = entry.get("action", "SCMP_ACT_ALLOW")
        inc, exc = entry.get("includes") or {}, entry.get("excludes") or {}
        rule = seccomp_default.Rule(names, None, (), tuple(inc.get("arches") or ()), tuple(exc.get("arches") or ()),
                                    tuple(inc.get("caps") or ()), tuple(exc.get("caps") or ()),
                                    inc.get("minKernel") or "")
        rules.append((rule, action, entry))
    return rules  # type: ignore[return-value]


def _kernel_at_least(version: str) -> bool:
    def parts(text: str) -> tuple[int, ...]:
        numbers = []
        for piece in text.split("-")[0].split(".")[:2]:
            digits = "".join(ch for ch in piece if ch.isdigit())
            numbers.append(int(digits or 0))
        return tuple(numbers)
    return parts(platform.release()) >= parts(version)


def _applies(rule: seccomp_default.Rule, arch: str, caps: list[str]) -> bool:
    if rule.only_arches and arch not in rule.only_arches:
        return False
    if rule.not_arches and arch in rule.not_arches:
        return False
    if rule.only_caps and not all(c in caps for c in rule.only_caps):
        return False
    if rule.not_caps and any(c in caps for c in rule.not_caps):
        return False
    return not rule.min_kernel or _kernel_at_least(rule.min_kernel)


def seccomp_profile(caps: list[str], custom: dict[str, Any] | None = None,
                    machine: str | None = None) -> dict[str, Any]:
    """Docker's default (or a custom Docker-format) profile resolved for this arch and caps."""
    arch = _GO_ARCH.get(machine or platform.machine(), machine or platform.machine())
    if custom is None:
        syscalls = []
        for rule in seccomp_default.RULES:
            if not _applies(rule, arch, caps):
                continue
            entry: dict[str, Any] = {"names": list(rule.names),
                                     "action": "SCMP_ACT_ALLOW" if rule.errno is None else "SCMP_ACT_ERRNO"}
            if rule.errno is not None:
                entry["errnoRet"] = rule.errno
            if rule.args:
                entry["args"] = [{"index": i, "value": v, "op": f"SCMP_CMP_{op}"}
                                 for i, v, op in rule.args]
            syscalls.append(entry)
        return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": seccomp_default.DEFAULT_ERRNO,
                "architectures": list(seccomp_default.ARCHES.get(arch, ())), "syscalls": syscalls}
    out = {k: v for k, v in custom.items() if k in ("defaultAction", "defaultErrnoRet", "listenerPath",
                                                     "listenerMetadata", "flags")}
    if "defaultAction" not in out:
        raise InvalidArgument("HostConfig.SecurityOpt: seccomp profile has no defaultAction")
    if custom.get("archMap"):
        arches = []
        for item in custom["archMap"]:
            if _GO_ARCH.get(machine or platform.machine()) and item.get("architecture", "").endswith(
                    ("X86_64" if arch == "amd64" else "AARCH64")):
                arches = [item["architecture"], *(item.get("subArchitectures") or [])]
        out["architectures"] = arches
    elif custom.get("architectures"):
        out["architectures"] = list(custom["architectures"])
    out["syscalls"] = []
    for rule, _action, entry in _rules_from_docker(custom):  # type: ignore[misc]
        if _applies(rule, arch, caps):
            out["syscalls"].append({k: v for k, v in entry.items() if k not in ("includes", "excludes", "comment",
                                                                                "name")} | {"names": list(rule.names)})
    return out


# -- namespaces, resources, devices -------------------------------------------------------------


def _mode(value: str, field: str, allowed: tuple[str, ...]) -> str:
    if value.startswith("container:") and "container" not in allowed:
        raise InvalidArgument(f"HostConfig.{field}: joining another container's namespace is not allowed for it")
    if value not in allowed and not value.startswith("container:"):
        raise InvalidArgument(f"HostConfig.{field}: invalid mode {value!r}")
    return value


def _shared(kind: str, mode: str, field: str, joined: dict[str, str]) -> dict[str, str]:
    """A namespace entry: the other container's (`container:<id>`, its path in `joined`) or new."""
    if not mode.startswith("container:"):
        return {"type": kind}
    if not joined.get(kind):
        raise InvalidArgument(f"HostConfig.{field}={mode}: the container's {kind} namespace is not known")
    return {"type": kind, "path": joined[kind]}


def _namespaces(host: HostConfig, netns_path: str | None, joined: dict[str, str] | None = None) -> list[dict[str, str]]:
    joined = joined or {}
    spaces: list[dict[str, str]] = [{"type": "mount"}]
    # any other mode is a network name (checked by the network service); container:<id> comes
    # with the other container's namespace in netns_path
    mode = host.network_mode
    if mode.startswith("container:") and not netns_path:
        raise InvalidArgument(f"HostConfig.NetworkMode={mode}: the container's network namespace is not known")
    if mode != "host":
        spaces.append({"type": "network", "path": netns_path} if netns_path else {"type": "network"})
    if _mode(host.ipc_mode, "IpcMode", ("", "private", "shareable", "none", "host", "container")) != "host":
        spaces.append(_shared("ipc", host.ipc_mode, "IpcMode", joined))
    if _mode(host.pid_mode, "PidMode", ("", "host", "container")) != "host":
        spaces.append(_shared("pid", host.pid_mode, "PidMode", joined))
    if _mode(host.uts_mode, "UTSMode", ("", "host")) != "host":
        spaces.append({"type": "uts"})
    spaces.append({"type": "cgroup"})
    return spaces


def resources(host: HostConfig) -> dict[str, Any]:
    """linux.resources: Docker's device rules, memory/swap, CPU, pids and blkio."""
    out: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if host.privileged:
        out["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        for kind, major, minor, access in _DEVICE_RULES:
            rule: dict[str, Any] = {"allow": True, "type": kind}
            if major is not None:
                rule["major"] = major
            if minor is not None:
                rule["minor"] = minor
            rule["access"] = access
            out["devices"].append(rule)
        out["devices"] += [device_cgroup_rule(r) for r in host.device_cgroup_rules]
    memory: dict[str, Any] = {}
    if host.memory < 0 or host.memory_reservation < 0:
        raise InvalidArgument("HostConfig.Memory: must not be negative")
    if host.memory:
        if host.memory < 6 * 1024 * 1024:
            raise InvalidArgument("HostConfig.Memory: minimum memory limit allowed is 6MB")
        memory["limit"] = host.memory
        if host.memory_swap == 0:
            memory["swap"] = 2 * host.memory
        elif host.memory_swap == -1:
            memory["swap"] = -1
        elif host.memory_swap < host.memory:
            raise InvalidArgument("HostConfig.MemorySwap: must be larger than or equal to Memory")
        else:
            memory["swap"] = host.memory_swap
    elif host.memory_swap > 0:
        raise InvalidArgument("HostConfig.MemorySwap: set Memory too when setting MemorySwap")
    if host.memory_reservation:
        memory["reservation"] = host.memory_reservation
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if host.nano_cpus:
        if host.cpu_quota or host.cpu_period:
            raise InvalidArgument("HostConfig.NanoCpus: conflicts with CpuPeriod/CpuQuota")
        if host.nano_cpus < 0 or host.nano_cpus > (os.cpu_count() or 1) * 10**9:
            raise InvalidArgument(f"HostConfig.NanoCpus: range of CPUs is from 0.01 to {os.cpu_count()}")
        cpu["quota"] = host.nano_cpus * CPU_PERIOD // 10**9
        cpu["period"] = CPU_PERIOD
    if host.cpu_quota:
        cpu["quota"] = host.cpu_quota
    if host.cpu_period:
        cpu["period"] = host.cpu_period
    if host.cpu_shares:
        cpu["shares"] = host.cpu_shares
    if host.cpuset_cpus:
        cpu["cpus"] = host.cpuset_cpus
    if host.cpuset_mems:
        cpu["mems"] = host.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    if host.pids_limit is not None and host.pids_limit > 0:
        out["pids"] = {"limit": host.pids_limit}
    if host.blkio_weight:
        if not 10 <= host.blkio_weight <= 1000:
            raise InvalidArgument("HostConfig.BlkioWeight: range is from 10 to 1000")
        out["blockIO"] = {"weight": host.blkio_weight}
    return out


def _device_entry(host_path: str, container_path: str) -> dict[str, Any]:
    info = os.stat(host_path)
    kind = "c" if stat.S_ISCHR(info.st_mode) else "b" if stat.S_ISBLK(info.st_mode) else None
    if kind is None:
        raise InvalidArgument(f"HostConfig.Devices: {host_path} is not a device")
    return {"path": container_path, "type": kind, "major": os.major(info.st_rdev), "minor": os.minor(info.st_rdev),
            "fileMode": stat.S_IMODE(info.st_mode), "uid": info.st_uid, "gid": info.st_gid}


def _host_devices() -> list[dict[str, Any]]:
    found = []
    for directory, subdirs, names in os.walk("/dev"):
        subdirs[:] = [d for d in subdirs if os.path.join(directory, d) not in ("/dev/pts", "/dev/shm", "/dev/mqueue")]
        for name in sorted(names):
            path = os.path.join(directory, name)
            if path == "/dev/console" or os.path.islink(path):
                continue
            try:
                found.append(_device_entry(path, path))
            except (InvalidArgument, OSError):
                continue
    return found


_CGROUP_RULE = re.compile(r"([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})")


def device_cgroup_rule(text: Any) -> dict[str, Any]:
    """`--device-cgroup-rule 'c 7:128 rwm'` (Docker's syntax) as an OCI allow rule."""
    match = _CGROUP_RULE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or len(set(match.group(4))) != len(match.group(4)):
        raise InvalidArgument(f"HostConfig.DeviceCgroupRules: invalid device cgroup rule {text!r} "
                              "(expected 'TYPE MAJOR:MINOR ACCESS', e.g. 'c 7:128 rwm')")
    kind, major, minor, access = match.groups()
    rule: dict[str, Any] = {"allow": True, "type": kind}
    if major != "*":
        rule["major"] = int(major)
    if minor != "*":
        rule["minor"] = int(minor)
    rule["access"] = access
    return rule


def _devices(host: HostConfig, res: dict[str, Any]) -> list[dict[str, Any]]:
    devices = _host_devices() if host.privileged else []
    for item in host.devices:
        source = item.get("PathOnHost") or ""
        target = item.get("PathInContainer") or source
        access = item.get("CgroupPermissions") or "rwm"
        if not source.startswith("/") or not set(access) <= set("rwm"):
            raise InvalidArgument(f"HostConfig.Devices: invalid device {item!r}")
        if os.path.isdir(source):
            raise NotImplementedFeature(f"HostConfig.Devices: device directories are not supported ({source})")
        try:
            entry = _device_entry(source, target)
        except FileNotFoundError as exc:
            raise InvalidArgument(f"HostConfig.Devices: error gathering device information for {source}") from exc
        devices.append(entry)
        res["devices"].append({"allow": True, "type": entry["type"], "major": entry["major"],
                               "minor": entry["minor"], "access": access})
    return devices


def _sysctls(sysctls: dict[str, str], network_mode: str) -> dict[str, str]:
    for key in sysctls:
        if key in _NAMESPACED_SYSCTLS or key.startswith(_NAMESPACED_SYSCTL_PREFIXES):
            if key.startswith("net.") and network_mode == "host":
                raise InvalidArgument(f"HostConfig.Sysctls: {key} cannot be set with the host network")
            continue
        raise InvalidArgument(f"HostConfig.Sysctls: {key} is not a namespaced sysctl")
    return dict(sysctls)


# -- mounts ---------------------------------------------------------------------------------------


def _default_mounts(host: HostConfig, shm_source: str | None = None) -> list[dict[str, Any]]:
    sys_ro = [] if host.privileged else ["ro"]
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", *sys_ro]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", *sys_ro]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    ]
    if shm_source:
        # a shareable container's own /dev/shm, or the one of the container whose IPC it joins:
        # a tmpfs the daemon keeps in its namespace (POSIX shared memory lives there)
        if host.ipc_mode.startswith("container:") and host.shm_size:
            raise InvalidArgument("HostConfig.ShmSize: conflicting options: shm-size and ipc container")
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": shm_source, "options": ["rbind", "rprivate"]})
    elif host.ipc_mode not in ("none", "host"):
        if host.shm_size < 0:
            raise InvalidArgument("HostConfig.ShmSize: must not be negative")
        size = host.shm_size or DEFAULT_SHM_SIZE
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={size}"]})
    elif host.ipc_mode == "host":
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm", "options": ["rbind", "rprivate"]})
    return mounts




def _bind_from_string(spec: str) -> dict[str, Any]:
    bind = parse_bind(spec)
    if bind.is_volume:
        raise NotImplementedFeature(f"HostConfig.Binds: volume {bind.source!r} was not resolved by a volume service")
    source = bind.source
    if not os.path.exists(source):
        os.makedirs(source, exist_ok=True)  # -v creates a missing host directory, as docker does
    options = ["rbind", bind.propagation or "rprivate"]
    if bind.readonly:
        options.append("ro")
    return {"destination": bind.target, "type": "bind", "source": source, "options": options}


def _tmpfs_options(opts: list[str]) -> list[str]:
    base = {"noexec": "noexec", "nosuid": "nosuid", "nodev": "nodev"}
    extra: list[str] = []
    for opt in opts:
        if opt in ("exec", "noexec"):
            base["noexec"] = opt
        elif opt in ("suid", "nosuid"):
            base["nosuid"] = opt
        elif opt in ("dev", "nodev"):
            base["nodev"] = opt
        elif opt:
            extra.append(opt)
    return [*base.values(), *extra]


def _mount_from_api(item: dict[str, Any]) -> dict[str, Any]:
    kind = item.get("Type")
    target = _check_target(str(item.get("Target") or ""), "HostConfig.Mounts")
    if kind == "bind":
        source = str(item.get("Source") or "")
        if not source.startswith("/"):
            raise InvalidArgument(f"HostConfig.Mounts: bind source {source!r} must be an absolute path")
        if not os.path.exists(source):
            raise InvalidArgument(f"HostConfig.Mounts: bind source path does not exist: {source}")
        bind = item.get("BindOptions") or {}
        propagation = bind.get("Propagation") or "rprivate"
        if propagation not in _PROPAGATIONS:
            raise InvalidArgument(f"HostConfig.Mounts: invalid propagation {propagation!r}")
        options = ["bind" if bind.get("NonRecursive") else "rbind", propagation]
        if item.get("ReadOnly"):
            options.append("ro")
        return {"destination": target, "type": "bind", "source": source, "options": options}
    if kind == "tmpfs":
        tmpfs = item.get("TmpfsOptions") or {}
        opts = []
        if tmpfs.get("SizeBytes"):
            opts.append(f"size={int(tmpfs['SizeBytes'])}")
        if tmpfs.get("Mode"):
            opts.append(f"mode={int(tmpfs['Mode']):o}")
        if item.get("ReadOnly"):
            opts.append("ro")
        return {"destination": target, "type": "tmpfs", "source": "tmpfs", "options": _tmpfs_options(opts)}
    raise NotImplementedFeature(f"HostConfig.Mounts: mount type {kind!r} is not supported")


def _mounts(host: HostConfig, files: dict[str, str], init_path: str | None,
            volumes: list[dict[str, Any]] | None = None, shm_source: str | None = None) -> list[dict[str, Any]]:
    """`volumes`: the OCI mounts of the container's volumes (named, anonymous, --volumes-from),
    resolved by the container service; without them a volume in Binds or Mounts is refused."""
    resolved = volumes is not None
    if not resolved and host.volumes_from:
        raise NotImplementedFeature("HostConfig.VolumesFrom: needs the container service (it resolves the volumes)")
    user: list[dict[str, Any]] = [_bind_from_string(b) for b in host.binds if not (resolved and parse_bind(b).is_volume)]
    user += [_mount_from_api(m) for m in host.mounts if not (resolved and m.get("Type") == "volume")]
    user += [dict(m) for m in volumes or []]
    for target, options in (host.tmpfs or {}).items():
        user.append({"destination": _check_target(target, "HostConfig.Tmpfs"), "type": "tmpfs", "source": "tmpfs",
                     "options": _tmpfs_options((options or "").split(","))})
    seen: set[str] = set()
    for mount in user:
        if mount["destination"] in seen:
            raise InvalidArgument(f"duplicate mount point: {mount['destination']}")
        seen.add(mount["destination"])
    file_opts = ["rbind", "rprivate"] + (["ro"] if host.readonly_rootfs else [])
    for name, target in (("resolv.conf", "/etc/resolv.conf"), ("hostname", "/etc/hostname"), ("hosts", "/etc/hosts")):
        if name in files and target not in seen:
            user.append({"destination": target, "type": "bind", "source": files[name], "options": list(file_opts)})
    if host.init and init_path:
        user.append({"destination": INIT_PATH_IN_CONTAINER, "type": "bind", "source": init_path,
                     "options": ["bind", "ro"]})
    defaults = [m for m in _default_mounts(host, shm_source) if m["destination"] not in seen]
    # parents before children, so a mount never hides one made inside it (moby sorts likewise)
    user.sort(key=lambda m: len(m["destination"].rstrip("/").split("/")))
    return defaults + user
