"""Loading and validating an OCI bundle's config.json (runtime-spec 1.1).

The config stays a plain dict (the spec's own JSON shape) so that it can be stored in the
container state and passed on unchanged; this module checks it, one function per concern,
and fills in the few defaults the rest of the runtime relies on.
"""

from __future__ import annotations

import os

from dockyard.errors import InvalidSpec
from dockyard.utils import fastjson as json

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any

Spec = dict  # the config.json object: dict[str, Any]

NAMESPACE_FLAGS = {
    "pid": 0x20000000,
    "network": 0x40000000,
    "mount": 0x00020000,
    "ipc": 0x08000000,
    "uts": 0x04000000,
    "user": 0x10000000,
    "cgroup": 0x02000000,
    "time": 0x00000080,
}
# the name of each namespace under /proc/<pid>/ns/
NAMESPACE_PROC_NAMES = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}
_ID_PUNCTUATION = set("_+-.")


def validate_id(container_id: str) -> None:
    if not container_id:
        raise InvalidSpec("container id cannot be empty")
    valid = all(c.isalnum() or c in _ID_PUNCTUATION for c in container_id)
    if not valid or container_id in (".", ".."):
        raise InvalidSpec(f"invalid container id {container_id!r}: use letters, digits, '_', '+', '-' and '.'")


def load_bundle(bundle: str) -> Spec:
    """Read and validate `bundle`/config.json; the root path is made absolute."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise InvalidSpec(f"bundle {bundle}: config.json not found") from None
    except OSError as e:
        raise InvalidSpec(f"bundle {bundle}: cannot read config.json: {e.strerror}") from None
    try:
        spec = json.loads(raw)
    except ValueError as e:
        raise InvalidSpec(f"{path}: invalid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise InvalidSpec(f"{path}: the top level must be a JSON object")
    validate(spec, bundle)
    return spec


def validate(spec: Spec, bundle: str) -> None:
    _check_version(spec)
    _check_root(spec, bundle)
    _check_process(spec.get("process"), "process")
    _check_mounts(spec.get("mounts") or [])
    linux = spec.get("linux")
    if linux is not None:
        if not isinstance(linux, dict):
            raise InvalidSpec("linux must be an object")
        _check_namespaces(linux)
        _check_id_mappings(linux)
        _check_paths(linux)
        _check_devices(linux.get("devices") or [])
        _check_sysctl(linux)
    if spec.get("hostname") and not has_namespace(spec, "uts"):
        raise InvalidSpec("hostname requires a UTS namespace")
    if spec.get("domainname") and not has_namespace(spec, "uts"):
        raise InvalidSpec("domainname requires a UTS namespace")
    _check_hooks(spec.get("hooks") or {})


def _check_version(spec: Spec) -> None:
    version = spec.get("ociVersion")
    if not isinstance(version, str) or not version:
        raise InvalidSpec("ociVersion is required")
    if not version.startswith("1."):
        raise InvalidSpec(f"unsupported ociVersion {version!r}: this runtime implements 1.x")


def _check_root(spec: Spec, bundle: str) -> None:
    root = spec.get("root")
    if not isinstance(root, dict) or not isinstance(root.get("path"), str) or not root["path"]:
        raise InvalidSpec("root.path is required")
    path = root["path"]
    if not os.path.isabs(path):
        path = os.path.join(bundle, path)
    path = os.path.realpath(path)
    if not os.path.isdir(path):
        raise InvalidSpec(f"root.path {path}: rootfs does not exist or is not a directory")
    root["path"] = path


def _check_process(process: Any, where: str) -> None:
    if process is None:
        return
    if not isinstance(process, dict):
        raise InvalidSpec(f"{where} must be an object")
    args = process.get("args")
    if args is not None and (not isinstance(args, list) or not all(isinstance(a, str) for a in args)):
        raise InvalidSpec(f"{where}.args must be a list of strings")
    cwd = process.get("cwd", "/")
    if not isinstance(cwd, str) or not os.path.isabs(cwd):
        raise InvalidSpec(f"{where}.cwd {cwd!r} must be an absolute path")
    env = process.get("env") or []
    if not isinstance(env, list) or not all(isinstance(e, str) and "=" in e for e in env):
        raise InvalidSpec(f"{where}.env entries must be strings of the form KEY=value")
    user = process.get("user") or {}
    for key in ("uid", "gid"):
        value = user.get(key, 0)
        if not isinstance(value, int) or value < 0:
            raise InvalidSpec(f"{where}.user.{key} must be a non-negative integer")
    for rl in process.get("rlimits") or []:
        if not isinstance(rl, dict) or not isinstance(rl.get("type"), str):
            raise InvalidSpec(f"{where}.rlimits entries need a type")
        if rl["type"] not in RLIMITS:
            raise InvalidSpec(f"{where}.rlimits: unknown rlimit type {rl['type']!r}")
        if rl.get("soft", 0) > rl.get("hard", 0):
            raise InvalidSpec(f"{where}.rlimits {rl['type']}: soft limit exceeds hard limit")
    size = process.get("consoleSize")
    if size is not None and (not isinstance(size, dict) or not {"height", "width"} <= set(size)):
        raise InvalidSpec(f"{where}.consoleSize needs height and width")
    oom = process.get("oomScoreAdj")
    if oom is not None and (not isinstance(oom, int) or not -1000 <= oom <= 1000):
        raise InvalidSpec(f"{where}.oomScoreAdj must be an integer in [-1000, 1000]")


RLIMITS = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}


def _check_mounts(mounts: Any) -> None:
    if not isinstance(mounts, list):
        raise InvalidSpec("mounts must be a list")
    for i, m in enumerate(mounts):
        if not isinstance(m, dict):
            raise InvalidSpec(f"mounts[{i}] must be an object")
        dest = m.get("destination")
        if not isinstance(dest, str) or not dest:
            raise InvalidSpec(f"mounts[{i}].destination is required")
        if not os.path.isabs(dest):
            raise InvalidSpec(f"mounts[{i}].destination {dest!r} must be an absolute path")
        opts = m.get("options") or []
        if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
            raise InvalidSpec(f"mounts[{i}].options must be a list of strings")
        is_bind = m.get("type") == "bind" or "bind" in opts or "rbind" in opts
        if is_bind:
            src = m.get("source")
            if not isinstance(src, str) or not src:
                raise InvalidSpec(f"mounts[{i}] ({dest}): a bind mount needs a source")


def _check_namespaces(linux: dict[str, Any]) -> None:
    seen = set()
    for ns in linux.get("namespaces") or []:
        kind = ns.get("type") if isinstance(ns, dict) else None
        if kind not in NAMESPACE_FLAGS:
            raise InvalidSpec(f"unknown namespace type {kind!r}")
        if kind in seen:
            raise InvalidSpec(f"namespace {kind} is listed twice")
        seen.add(kind)
        path = ns.get("path")
        if path:
            if not os.path.isabs(path):
                raise InvalidSpec(f"namespace {kind}: path {path!r} must be absolute")
            if not os.path.exists(path):
                raise InvalidSpec(f"namespace {kind}: path {path} does not exist")


def _check_id_mappings(linux: dict[str, Any]) -> None:
    for key in ("uidMappings", "gidMappings"):
        maps = linux.get(key) or []
        for m in maps:
            if not all(isinstance(m.get(f), int) and m.get(f) >= 0 for f in ("containerID", "hostID", "size")):
                raise InvalidSpec(f"linux.{key}: entries need non-negative containerID, hostID and size")
    has_maps = bool(linux.get("uidMappings") or linux.get("gidMappings"))
    user_ns = any(ns.get("type") == "user" for ns in linux.get("namespaces") or [])
    if has_maps and not user_ns:
        raise InvalidSpec("uid/gid mappings require a user namespace")
    if user_ns and not any(ns.get("type") == "user" and ns.get("path") for ns in linux["namespaces"]):
        if not linux.get("uidMappings") or not linux.get("gidMappings"):
            raise InvalidSpec("a new user namespace needs uidMappings and gidMappings")


def _check_paths(linux: dict[str, Any]) -> None:
    for key in ("maskedPaths", "readonlyPaths"):
        for p in linux.get(key) or []:
            if not isinstance(p, str) or not os.path.isabs(p):
                raise InvalidSpec(f"linux.{key}: {p!r} must be an absolute path")
    prop = linux.get("rootfsPropagation")
    if prop and prop not in ("shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate", "runbindable"):
        raise InvalidSpec(f"linux.rootfsPropagation: unknown value {prop!r}")
    cg = linux.get("cgroupsPath")
    if cg is not None and not isinstance(cg, str):
        raise InvalidSpec("linux.cgroupsPath must be a string")


def _check_devices(devices: list[Any]) -> None:
    for d in devices:
        path = d.get("path") if isinstance(d, dict) else None
        if not isinstance(path, str) or not os.path.isabs(path):
            raise InvalidSpec(f"linux.devices: path {path!r} must be absolute")
        if d.get("type") not in ("c", "b", "u", "p"):
            raise InvalidSpec(f"linux.devices {path}: type must be one of c, b, u, p")
        if d["type"] != "p" and not (isinstance(d.get("major"), int) and isinstance(d.get("minor"), int)):
            raise InvalidSpec(f"linux.devices {path}: major and minor are required")


_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def _check_sysctl(linux: dict[str, Any]) -> None:
    for key in linux.get("sysctl") or {}:
        if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
            need = "ipc"
        elif key.startswith("net."):
            need = "network"
        elif key in ("kernel.hostname", "kernel.domainname"):
            need = "uts"
        else:
            raise InvalidSpec(f"sysctl {key!r} is not namespaced and cannot be set in a container")
        ns = [n for n in linux.get("namespaces") or [] if n.get("type") == need]
        if not ns:
            raise InvalidSpec(f"sysctl {key!r} needs a {need} namespace")


HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def _check_hooks(hooks: Any) -> None:
    if not isinstance(hooks, dict):
        raise InvalidSpec("hooks must be an object")
    for kind, entries in hooks.items():
        if kind not in HOOK_KINDS:
            raise InvalidSpec(f"unknown hook kind {kind!r}")
        for h in entries or []:
            if not isinstance(h, dict) or not isinstance(h.get("path"), str) or not os.path.isabs(h["path"]):
                raise InvalidSpec(f"hooks.{kind}: each hook needs an absolute path")
            timeout = h.get("timeout")
            if timeout is not None and (not isinstance(timeout, int) or timeout <= 0):
                raise InvalidSpec(f"hooks.{kind} {h['path']}: timeout must be a positive integer")


def join_order(kind: str) -> int:
    """Sort key for entering namespaces: the user namespace first (it owns the others), the
    mount namespace last (after it, the host's /proc paths are out of sight)."""
    return {"user": 0, "mount": 9}.get(kind, 5)


def namespaces(spec: Spec) -> list[dict[str, Any]]:
    return list((spec.get("linux") or {}).get("namespaces") or [])


def has_new_namespace(spec: Spec, kind: str) -> bool:
    return any(ns.get("type") == kind and not ns.get("path") for ns in namespaces(spec))


def has_namespace(spec: Spec, kind: str) -> bool:
    return any(ns.get("type") == kind for ns in namespaces(spec))
