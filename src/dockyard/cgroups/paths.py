"""Where a container's cgroup lives: cgroupsPath semantics, hierarchy discovery, /proc/<pid>/cgroup.

cgroupsPath follows runc's cgroupfs driver:

- an absolute path (``/docker/<id>``) is taken below the root of each hierarchy;
- a relative path (``mygroup/<id>``) is taken below the caller's own cgroup in each v1
  hierarchy (from /proc/self/cgroup, made relative to the mount's root for nested setups), and
  below the *parent* of the caller's cgroup on v2 (the caller's own cgroup holds processes, so
  v2's no-internal-processes rule would stop controllers being enabled for a child);
- paths are cleaned lexically first, and ``..`` cannot climb above the start.

Deliberate difference: an empty cgroupsPath means ``/dockyard/<id>``. runc uses ``<id>``
relative to its own cgroup, which puts a container inside whatever cgroup the caller (a
shell, a daemon, a CI job) happens to run in, and makes where a container lands depend on who
started it. A path that resolves to a hierarchy root (``/``, ``.``) is refused.

This module is on the runtime's hot path (every ``dockyard-runtime`` call): standard-library
basics only, and /proc/self/mountinfo is read and parsed once per process (``forget_mounts``
drops that cache for a long-lived caller whose cgroup mounts changed).
"""

from __future__ import annotations

import errno
import os
import posixpath

from dockyard.cgroups import fs
from dockyard.errors import InvalidArgument, InvalidSpec, SystemFailure

DEFAULT_ROOT = "/sys/fs/cgroup"
DEFAULT_PARENT = "/dockyard"

# v1 controllers the kernel can mount; named hierarchies appear as "name=<x>"
V1_CONTROLLERS = frozenset(
    {"cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer", "net_cls", "net_prio",
     "perf_event", "hugetlb", "pids", "rdma", "misc"}
)
UNIFIED = ""  # the key of the v2 hierarchy in /proc/<pid>/cgroup maps, as in runc


def clean_path(path: str) -> str:
    """runc's CleanPath: lexical cleaning; a relative path cannot escape upwards."""
    if not path:
        return ""
    if path.startswith("/"):
        return posixpath.normpath(path).replace("//", "/")
    return posixpath.relpath(posixpath.normpath("/" + path), "/")


def normalise(cgroups_path: str | None, container_id: str) -> str:
    """The cleaned cgroupsPath, or the default ``/dockyard/<id>`` when none is given."""
    if not cgroups_path:
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise InvalidArgument(f"container id {container_id!r} cannot name a cgroup")
        return f"{DEFAULT_PARENT}/{container_id}"
    cleaned = clean_path(cgroups_path)
    if cleaned in ("/", "."):
        raise InvalidSpec(f"linux.cgroupsPath {cgroups_path!r} resolves to the root of the hierarchy")
    return cleaned


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``hierarchy-id:controllers:path`` lines into {controller: path}; v2's key is ""."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line:
            continue
        parts = line.split(":", 2)
        if len(parts) != 3:
            raise SystemFailure(f"malformed /proc/<pid>/cgroup line {line!r}")
        for controller in parts[1].split(","):
            out[controller] = parts[2]
    return out


def current_cgroup_paths(pid: int | str = "self") -> dict[str, str]:
    """The cgroup of `pid` in each hierarchy, e.g. {"memory": "/docker/x", "name=systemd": "/", "": "/"}."""
    path = f"/proc/{pid}/cgroup"
    try:
        return parse_proc_cgroup(fs.read_bytes(path).decode("utf-8", "surrogateescape"))
    except SystemFailure as e:
        if e.errno in (errno.ENOENT, errno.ESRCH):
            raise SystemFailure(f"no {path}: process {pid} does not exist", e.errno) from None
        raise


class Hierarchy:
    """A mounted v1 hierarchy (or the hybrid v2 one, with no controllers); immutable.

    A plain class rather than a dataclass: importing dataclasses costs the runtime milliseconds.
    """

    __slots__ = ("controllers", "mountpoint", "root")
    controllers: tuple[str, ...]  # ("cpu", "cpuacct"), ("name=systemd",); () for hybrid v2
    mountpoint: str
    root: str  # the part of the hierarchy this mount shows (not "/" inside containers)

    def __init__(self, controllers: tuple[str, ...], mountpoint: str, root: str = "/") -> None:
        object.__setattr__(self, "controllers", controllers)
        object.__setattr__(self, "mountpoint", mountpoint)
        object.__setattr__(self, "root", root)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Hierarchy is immutable: cannot set {name}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not Hierarchy:
            return NotImplemented
        return (self.controllers, self.mountpoint, self.root) == (other.controllers, other.mountpoint, other.root)

    def __hash__(self) -> int:
        return hash((self.controllers, self.mountpoint, self.root))

    def __reduce__(self) -> tuple[type[Hierarchy], tuple[tuple[str, ...], str, str]]:
        return (Hierarchy, (self.controllers, self.mountpoint, self.root))  # copy and pickle

    def __repr__(self) -> str:
        return f"Hierarchy(controllers={self.controllers!r}, mountpoint={self.mountpoint!r}, root={self.root!r})"

    @property
    def name(self) -> str:
        """What to call it inside a container's /sys/fs/cgroup: "cpu,cpuacct", "systemd"."""
        return os.path.basename(self.mountpoint)

    @property
    def key(self) -> str:
        """The /proc/<pid>/cgroup key that finds our place in it."""
        return self.controllers[0] if self.controllers else UNIFIED


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    if "\\" not in field:
        return field
    for code, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, ch)
    return field


def _cgroup_mounts(text: str) -> list[Hierarchy]:
    """Every cgroup and cgroup2 mount in mountinfo `text`, in mount order."""
    found = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        tail = post.split()
        if len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        fields = pre.split()
        if len(fields) < 5:
            continue
        if tail[0] == "cgroup":
            controllers = tuple(o for o in tail[2].split(",") if o in V1_CONTROLLERS or o.startswith("name="))
        else:
            controllers = ()
        found.append(Hierarchy(controllers, _unescape(fields[4]), _unescape(fields[3])))
    return found


def _below(mounts: list[Hierarchy], root: str) -> list[Hierarchy]:
    """The hierarchies mounted directly below `root`, first mount of each wins."""
    found: list[Hierarchy] = []
    seen: set[str] = set()
    for h in mounts:
        if os.path.dirname(h.mountpoint) != root:
            continue
        controllers = h.controllers
        tag = ",".join(controllers) or UNIFIED
        if tag in seen or (controllers and seen.intersection(controllers)):
            continue
        seen.add(tag)
        seen.update(controllers)
        found.append(h)
    return found


def parse_mountinfo(text: str, root: str) -> list[Hierarchy]:
    """The cgroup hierarchies mounted directly below `root`, first mount of each wins."""
    return _below(_cgroup_mounts(text), root)


_mounts_cache: dict[str, list[Hierarchy]] = {}  # mountinfo path -> its cgroup mounts


def _mounts_from(mountinfo: str) -> list[Hierarchy]:
    """The cgroup mounts in `mountinfo`, read and parsed once per process."""
    mounts = _mounts_cache.get(mountinfo)
    if mounts is None:
        text = fs.read_bytes(mountinfo).decode("utf-8", "surrogateescape")
        mounts = _mounts_cache[mountinfo] = _cgroup_mounts(text)
    return mounts


def forget_mounts() -> None:
    """Drop the cached mountinfo, for a long-lived process whose cgroup mounts changed."""
    _mounts_cache.clear()


def scan_layout(root: str) -> list[Hierarchy]:
    """Hierarchies from directory names alone, for a root that is not a mount (test trees).

    "cpu,cpuacct" -> controllers cpu and cpuacct; "systemd" -> name=systemd; a directory with
    cgroup.controllers -> the hybrid v2 hierarchy.
    """
    found = []
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if not os.path.isdir(path):
            continue
        if os.path.exists(os.path.join(path, "cgroup.controllers")):
            found.append(Hierarchy((), path))
        elif entry == "systemd":
            found.append(Hierarchy(("name=systemd",), path))
        else:
            controllers = tuple(c for c in entry.split(",") if c in V1_CONTROLLERS)
            if controllers:
                found.append(Hierarchy(controllers, path))
    return found


def discover_v1(root: str = DEFAULT_ROOT, mountinfo: str = "/proc/self/mountinfo") -> list[Hierarchy]:
    """The v1 hierarchies below `root`: from mountinfo, else (a test tree) from directory names."""
    found = _below(_mounts_from(mountinfo), root.rstrip("/") or "/")
    if not found and os.path.isdir(root):
        found = scan_layout(root)
    if not any(h.controllers for h in found):
        raise SystemFailure(f"no cgroup v1 hierarchies are mounted under {root}")
    return found


def is_unified(root: str = DEFAULT_ROOT) -> bool:
    """Whether `root` is itself a cgroup2 mount (pure v2), rather than v1 or hybrid."""
    return os.path.exists(os.path.join(root, "cgroup.controllers"))


def v1_dir(h: Hierarchy, inner: str, own: dict[str, str]) -> str:
    """The container's directory in hierarchy `h` for the normalised path `inner`."""
    if inner.startswith("/"):
        return posixpath.join(h.mountpoint, inner.lstrip("/"))
    mine = own.get(h.key)
    if mine is None:
        raise SystemFailure(f"this process has no cgroup in hierarchy {h.mountpoint}: cannot place {inner!r} in it")
    rel = posixpath.relpath(mine, h.root)
    if rel.startswith(".."):
        raise SystemFailure(f"our cgroup {mine} is outside the part {h.root} of {h.mountpoint} mounted here")
    return posixpath.normpath(posixpath.join(h.mountpoint, rel, inner))


def v2_dir(root: str, inner: str, own: dict[str, str]) -> str:
    """The container's directory in the unified hierarchy at `root`."""
    if inner.startswith("/"):
        return posixpath.join(root, inner.lstrip("/"))
    mine = own.get(UNIFIED)
    if mine is None:
        raise SystemFailure("this process has no cgroup v2 entry in /proc/self/cgroup")
    return posixpath.normpath(posixpath.join(root, posixpath.dirname(mine).lstrip("/"), inner))
