"""OCI bundles for tests: a busybox root filesystem and a config.json like `runc spec` writes.

    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    bundle = make_bundle(tmp_path / "bundle", ["echo", "hi"], hostname="box", terminal=False)

The root filesystem is the machine's static busybox (`/bin/busybox`) with one symlink per applet
in /bin, a minimal /etc/passwd and /etc/group, and the usual empty directories. It is built once
per busybox binary into a cache directory ($DOCKYARD_TEST_CACHE, default
/var/tmp/dockyard-tests) and copied from there, so that a test pays a few milliseconds for it.

The config.json is written here, not by `runc spec` or `dockyard-runtime spec`, so that it can
serve as an independent oracle for both. It has the OCI runtime-spec 1.1 shape of `runc spec`:
the default mounts, the default capability set (AUDIT_WRITE, KILL, NET_BIND_SERVICE), the masked
and read-only paths, the pid/network/ipc/uts/mount namespaces and a read-only root, with
`terminal` false so that a test can read the output from pipes.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

BUSYBOX = "/bin/busybox"
OCI_VERSION = "1.1.0"

# Bump when the layout of the rootfs changes, so that stale caches are not reused.
_TEMPLATE_LAYOUT = 1

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_ENV = [f"PATH={DEFAULT_PATH}", "TERM=xterm"]
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
DEFAULT_NAMESPACES = ["pid", "network", "ipc", "uts", "mount"]
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
DEFAULT_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/dev/shm",
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
        "destination": "/dev/mqueue",
        "type": "mqueue",
        "source": "mqueue",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
    {
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
    },
]

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnobody:x:65534:\n"
# Mode of each directory of the rootfs besides /bin; /tmp is world-writable and sticky.
ROOTFS_DIRS = {"proc": 0o555, "sys": 0o555, "dev": 0o755, "tmp": 0o1777, "etc": 0o755,
               "root": 0o700, "mnt": 0o755}


class BundleError(Exception):
    """The bundle could not be made (no busybox, unknown override, ...)."""


# ---------------------------------------------------------------------------- root filesystem


def _cache_root() -> Path:
    return Path(os.environ.get("DOCKYARD_TEST_CACHE", "/var/tmp/dockyard-tests"))


def _template_key(busybox: str) -> str:
    st = os.stat(busybox)
    return f"busybox-v{_TEMPLATE_LAYOUT}-{st.st_size}-{st.st_mtime_ns}-{st.st_ino}"


def _applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout
    # The list names busybox itself, which must stay the real binary, not a link to itself.
    return sorted(name for name in out.split() if name and name != "busybox" and "/" not in name)


def _build_rootfs(rootfs: Path, busybox: str) -> None:
    """Write a busybox root filesystem into the empty or absent directory `rootfs`."""
    rootfs.mkdir(parents=True, exist_ok=True)
    os.chmod(rootfs, 0o755)
    bin_dir = rootfs / "bin"
    bin_dir.mkdir()
    shutil.copy2(busybox, bin_dir / "busybox")
    for applet in _applets(busybox):
        os.symlink("busybox", bin_dir / applet)
    for name, mode in ROOTFS_DIRS.items():
        (rootfs / name).mkdir(exist_ok=True)
        os.chmod(rootfs / name, mode)
    (rootfs / "etc" / "passwd").write_text(PASSWD)
    (rootfs / "etc" / "group").write_text(GROUP)


def busybox_template(busybox: str = BUSYBOX) -> Path:
    """The cached busybox rootfs, built on first use. Treat it as read-only."""
    if not os.access(busybox, os.X_OK):
        raise BundleError(f"{busybox} is missing or not executable (Debian: apt-get install busybox-static)")
    cache = _cache_root()
    template = cache / _template_key(busybox)
    if (template / "bin" / "busybox").is_file():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    # Build beside the final place and rename, so that concurrent builders never see half a tree.
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        _build_rootfs(scratch / "rootfs", busybox)
        try:
            os.rename(scratch / "rootfs", template)
        except OSError:
            if not (template / "bin" / "busybox").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return template


def make_busybox_rootfs(dir: str | os.PathLike[str], *, hardlink: bool = False,
                        busybox: str = BUSYBOX) -> Path:
    """Create the busybox root filesystem at `dir` (absent or empty) and return its path.

    The copy is real by default, so that a test may change any file in it. With `hardlink`,
    files and symlinks are hard links into the cache (same filesystem only; a copy otherwise):
    several times faster, but then no file of the rootfs may be modified in place.
    """
    dest = Path(dir)
    if dest.exists() and any(dest.iterdir()):
        raise BundleError(f"{dest} is not empty: refusing to make a rootfs over it")
    _copy_tree(busybox_template(busybox), dest, hardlink)
    return dest


def _copy_tree(src: Path, dest: Path, hardlink: bool) -> None:
    """Copy a tree of directories, regular files and symlinks, keeping modes but not times.

    With `hardlink`, files and symlinks are hard links to the template's (on some directories
    of this machine, /tmp among them, creating a symlink costs a quarter of a millisecond).
    """
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, os.stat(src).st_mode & 0o7777)
    with os.scandir(src) as entries:
        for entry in entries:
            target = dest / entry.name
            if entry.is_symlink() and hardlink:
                os.link(entry.path, target, follow_symlinks=False)
            elif entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
            elif entry.is_dir():
                _copy_tree(Path(entry.path), target, hardlink)
            elif hardlink:
                _link_or_copy(entry.path, str(target))
            else:
                shutil.copy2(entry.path, target)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# ---------------------------------------------------------------------------- config.json


def _cap_name(name: str) -> str:
    name = name.upper()
    return name if name.startswith("CAP_") else "CAP_" + name


def default_spec(args: Iterable[str] = ("sh",)) -> dict[str, Any]:
    """The config `runc spec` writes, in runtime-spec 1.1 shape, with terminal off."""
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": list(DEFAULT_ENV),
            "cwd": "/",
            "capabilities": {s: list(DEFAULT_CAPS) for s in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": copy.deepcopy(DEFAULT_MOUNTS),
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in DEFAULT_NAMESPACES],
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def _env_list(env: Mapping[str, str] | Iterable[str]) -> list[str]:
    if isinstance(env, Mapping):
        return [f"{k}={v}" for k, v in env.items()]
    return list(env)


def _user(user: Any) -> dict[str, Any]:
    if isinstance(user, Mapping):
        return dict(user)
    if isinstance(user, int):
        return {"uid": user, "gid": user}
    uid, gid, *extra = user
    found: dict[str, Any] = {"uid": uid, "gid": gid}
    if extra:
        found["additionalGids"] = list(extra[0])
    return found


def _namespaces(items: Iterable[str | Mapping[str, str]]) -> list[dict[str, str]]:
    return [{"type": n} if isinstance(n, str) else dict(n) for n in items]


def _set_caps(spec: dict[str, Any], caps: Iterable[str]) -> None:
    names = [_cap_name(c) for c in caps]
    spec["process"]["capabilities"] = {s: list(names) for s in ("bounding", "effective", "permitted")}


def _set_hostname(spec: dict[str, Any], hostname: str | None) -> None:
    if hostname is None:
        spec.pop("hostname", None)
    else:
        spec["hostname"] = hostname


def _merge_resources(spec: dict[str, Any], resources: Mapping[str, Any]) -> None:
    spec["linux"].setdefault("resources", {}).update(copy.deepcopy(dict(resources)))


# name -> how the override changes the spec
_OVERRIDES: dict[str, Callable[[dict[str, Any], Any], None]] = {
    "env": lambda s, v: s["process"].__setitem__("env", _env_list(v)),
    "extra_env": lambda s, v: s["process"]["env"].extend(_env_list(v)),
    "terminal": lambda s, v: s["process"].__setitem__("terminal", bool(v)),
    "cwd": lambda s, v: s["process"].__setitem__("cwd", v),
    "user": lambda s, v: s["process"].__setitem__("user", _user(v)),
    "capabilities": _set_caps,
    "no_new_privileges": lambda s, v: s["process"].__setitem__("noNewPrivileges", bool(v)),
    "rlimits": lambda s, v: s["process"].__setitem__("rlimits", list(v)),
    "hostname": _set_hostname,
    "readonly": lambda s, v: s["root"].__setitem__("readonly", bool(v)),
    "mounts": lambda s, v: s.__setitem__("mounts", copy.deepcopy(list(v))),
    "extra_mounts": lambda s, v: s["mounts"].extend(copy.deepcopy(list(v))),
    "namespaces": lambda s, v: s["linux"].__setitem__("namespaces", _namespaces(v)),
    "masked_paths": lambda s, v: s["linux"].__setitem__("maskedPaths", list(v)),
    "readonly_paths": lambda s, v: s["linux"].__setitem__("readonlyPaths", list(v)),
    "resources": _merge_resources,
    "cgroups_path": lambda s, v: s["linux"].__setitem__("cgroupsPath", v),
    "uid_mappings": lambda s, v: s["linux"].__setitem__("uidMappings", list(v)),
    "gid_mappings": lambda s, v: s["linux"].__setitem__("gidMappings", list(v)),
    "sysctl": lambda s, v: s["linux"].__setitem__("sysctl", dict(v)),
    "seccomp": lambda s, v: s["linux"].__setitem__("seccomp", copy.deepcopy(v)),
    "annotations": lambda s, v: s.__setitem__("annotations", dict(v)),
    "hooks": lambda s, v: s.__setitem__("hooks", copy.deepcopy(v)),
}


def build_spec(args: Iterable[str] = ("sh",), **overrides: Any) -> dict[str, Any]:
    """`default_spec(args)` with the overrides of `make_bundle` applied (without writing it)."""
    spec = default_spec(args)
    edit = overrides.pop("edit", None)
    unknown = sorted(set(overrides) - set(_OVERRIDES))
    if unknown:
        raise TypeError(f"unknown bundle override(s) {unknown}; known: {sorted(_OVERRIDES)} and edit")
    for name, value in overrides.items():
        _OVERRIDES[name](spec, value)
    if edit is not None:
        edit(spec)
    return spec


def make_bundle(dir: str | os.PathLike[str], args: Iterable[str] = ("sh",), *,
                rootfs: str | os.PathLike[str] | None = None, hardlink: bool = False,
                **overrides: Any) -> Path:
    """Write an OCI bundle at `dir` (config.json plus rootfs/) and return its absolute path.

    `rootfs` uses an existing root filesystem (stored as an absolute root.path) instead of a
    fresh busybox copy in dir/rootfs. Overrides (see `_OVERRIDES`): env (list or mapping),
    extra_env, terminal, cwd, user ((uid, gid[, groups]) or a mapping), capabilities (names
    with or without CAP_, used for bounding/effective/permitted), no_new_privileges, rlimits,
    hostname (None drops it), readonly, mounts, extra_mounts, namespaces (type names or
    mappings with a path), masked_paths, readonly_paths, resources (merged into
    linux.resources), cgroups_path, uid_mappings, gid_mappings, sysctl, seccomp, annotations,
    hooks; and edit, a function called last with the spec dict to change anything else.
    """
    bundle = Path(dir).absolute()
    spec = build_spec(args, **overrides)
    bundle.mkdir(parents=True, exist_ok=True)
    if rootfs is None:
        make_busybox_rootfs(bundle / "rootfs", hardlink=hardlink)
    else:
        spec["root"]["path"] = str(Path(rootfs).absolute())
    tmp = bundle / ".config.json.tmp"
    tmp.write_text(json.dumps(spec, indent=2) + "\n")
    os.replace(tmp, bundle / "config.json")
    return bundle


def read_spec(bundle: str | os.PathLike[str]) -> dict[str, Any]:
    """The config.json of a bundle, parsed."""
    with open(Path(bundle) / "config.json") as f:
        result: dict[str, Any] = json.load(f)
    return result
