"""Building the container's filesystem view, run by the container init in its mount namespace.

Order (as the spec and runc do it): make the host's mounts slave so nothing propagates back,
bind the rootfs onto itself, mount the spec's mounts under it (destinations resolved safely),
create devices and /dev links, then pivot_root and finally apply masked and read-only paths.
"""

from __future__ import annotations

import errno
import os
import stat

from dockyard.errors import InvalidSpec, SystemFailure
from dockyard.linux import libc
from dockyard.runtime import mountopts
from dockyard.runtime.paths import secure_join

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any

# statvfs flags that are also mount flags and are locked on mounts inherited into a user namespace
_KEEP_FLAGS = (libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC | libc.MS_NOATIME
               | libc.MS_NODIRATIME | libc.MS_RELATIME)


def existing_flags(path: str) -> int:
    return os.statvfs(path).f_flag & _KEEP_FLAGS


def prepare_root(rootfs: str, propagation: str | None) -> None:
    """Nothing may propagate back to the host, and pivot_root refuses shared mounts: the host's
    tree becomes slave (or private, if asked); a shared rootfs is set up after the pivot."""
    flags = mountopts.rootfs_propagation(propagation)
    if flags & libc.MS_SHARED:
        flags = libc.MS_SLAVE | libc.MS_REC
    libc.mount(None, "/", None, flags)
    libc.mount(rootfs, rootfs, "bind", libc.MS_BIND | libc.MS_REC)
    # the rootfs's parent must not be shared either
    parent = os.path.dirname(rootfs.rstrip("/")) or "/"
    try:
        libc.mount(None, parent, None, libc.MS_PRIVATE)
    except SystemFailure as e:
        if e.errno != errno.EINVAL:  # the parent is not a mount point: nothing to do
            raise


def finish_root_propagation(propagation: str | None) -> None:
    """After pivot_root: the propagation the spec asked for, on the container's own root."""
    flags = mountopts.rootfs_propagation(propagation)
    if propagation and flags & libc.MS_SHARED:
        libc.mount(None, "/", None, flags)


def _make_mountpoint(target: str, source_is_file: bool) -> None:
    if source_is_file:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.lexists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o755))
    else:
        os.makedirs(target, exist_ok=True)


def mount_one(m: dict[str, Any], rootfs: str, cgroup_mounts: list[tuple[str, str]]) -> None:
    dest = m["destination"]
    target = secure_join(rootfs, dest)
    opts = mountopts.parse(m.get("options") or [])
    fstype = m.get("type") or ("bind" if opts.is_bind else "")
    source = m.get("source") or fstype
    if fstype == "bind" or opts.is_bind:
        _bind_mount(source, target, opts, dest)
    elif fstype == "cgroup":
        _mount_cgroup_v1(target, opts, cgroup_mounts)
    elif fstype == "cgroup2":
        _make_mountpoint(target, False)
        try:
            libc.mount("cgroup2", target, "cgroup2", opts.flags, opts.data_string)
        except SystemFailure as e:
            if e.errno not in (errno.EPERM, errno.EBUSY) or not cgroup_mounts:
                raise
            # no cgroup namespace of our own: bind the container's part of the unified hierarchy
            _bind_mount(cgroup_mounts[0][1], target, opts, dest)
    else:
        _make_mountpoint(target, False)
        copy_from = None
        if opts.copy_up and fstype == "tmpfs":
            copy_from = _stash(target)
        try:
            libc.mount(source, target, fstype, opts.flags & ~libc.MS_BIND, opts.data_string)
        except SystemFailure as e:
            if fstype == "sysfs" and e.errno == errno.EPERM:
                # sysfs needs our own network namespace; fall back to the host's, read-only
                _bind_mount("/sys", target, mountopts.parse(["rbind", "ro", "nosuid", "nodev", "noexec"]), dest)
                return
            if fstype == "mqueue" and e.errno in (errno.EPERM, errno.EINVAL):
                _bind_mount("/dev/mqueue", target, mountopts.parse(["rbind"]), dest)
                return
            raise
        if copy_from is not None:
            _copy_up(copy_from, target)
    for prop in opts.propagation:
        libc.mount(None, target, None, prop)


def _bind_mount(source: str, target: str, opts: mountopts.MountOptions, dest: str) -> None:
    if not os.path.exists(source):
        raise InvalidSpec(f"mount {dest}: source {source} does not exist")
    _make_mountpoint(target, not os.path.isdir(source))
    libc.mount(source, target, "bind", libc.MS_BIND | (opts.flags & libc.MS_REC))
    extra = opts.flags & ~(libc.MS_BIND | libc.MS_REC | libc.MS_REMOUNT)
    if extra:
        libc.mount(None, target, None, libc.MS_BIND | libc.MS_REMOUNT | extra | existing_flags(target))


def _mount_cgroup_v1(target: str, opts: mountopts.MountOptions, cgroup_mounts: list[tuple[str, str]]) -> None:
    """A tmpfs with this container's cgroup directory of each hierarchy bound under it."""
    _make_mountpoint(target, False)
    flags = opts.flags & ~(libc.MS_BIND | libc.MS_REC | libc.MS_RDONLY)
    libc.mount("tmpfs", target, "tmpfs", flags, "mode=755")
    for name, host_dir in cgroup_mounts:
        if not name:
            continue
        sub = os.path.join(target, name)
        os.makedirs(sub, exist_ok=True)
        libc.mount(host_dir, sub, "bind", libc.MS_BIND | libc.MS_REC)
        libc.mount(None, sub, None, libc.MS_BIND | libc.MS_REMOUNT | opts.flags & ~libc.MS_REC | existing_flags(sub))
        if "," in name:
            for alias in name.split(","):
                link = os.path.join(target, alias)
                if not os.path.lexists(link):
                    os.symlink(name, link)
    if opts.flags & libc.MS_RDONLY:
        libc.mount(None, target, None, libc.MS_REMOUNT | libc.MS_RDONLY | flags)


def _stash(target: str) -> str | None:
    """For tmpcopyup: the content below `target` before the tmpfs hides it, via a bind elsewhere."""
    if not os.listdir(target):
        return None
    stash = f"/tmp/.dockyard-copyup-{os.getpid()}"
    os.makedirs(stash, exist_ok=True)
    libc.mount(target, stash, "bind", libc.MS_BIND)
    return stash


def _copy_up(stash: str, target: str) -> None:
    import shutil  # only for tmpcopyup mounts, before pivot_root

    try:
        shutil.copytree(stash, target, symlinks=True, dirs_exist_ok=True)
    finally:
        libc.umount(stash, libc.MNT_DETACH)
        os.rmdir(stash)


DEFAULT_DEVICES = [
    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666},
    {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666},
    {"path": "/dev/full", "type": "c", "major": 1, "minor": 7, "fileMode": 0o666},
    {"path": "/dev/random", "type": "c", "major": 1, "minor": 8, "fileMode": 0o666},
    {"path": "/dev/urandom", "type": "c", "major": 1, "minor": 9, "fileMode": 0o666},
    {"path": "/dev/tty", "type": "c", "major": 5, "minor": 0, "fileMode": 0o666},
]
_DEVICE_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def create_devices(spec_devices: list[dict[str, Any]], rootfs: str, bind_from_host: bool) -> None:
    """The default devices plus the spec's: mknod, or bind the host's node in a user namespace."""
    wanted = {d["path"]: d for d in DEFAULT_DEVICES}
    for d in spec_devices:
        wanted[d["path"]] = d
    for d in wanted.values():
        target = secure_join(rootfs, d["path"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if bind_from_host:
            _make_mountpoint(target, True)
            libc.mount(d["path"], target, "bind", libc.MS_BIND)
            continue
        if os.path.lexists(target):
            os.unlink(target)
        mode = d.get("fileMode", 0o666) & 0o7777
        dev = os.makedev(d.get("major", 0), d.get("minor", 0)) if d["type"] != "p" else 0
        old = os.umask(0)
        try:
            os.mknod(target, mode | _DEVICE_TYPES[d["type"]], dev)
        finally:
            os.umask(old)
        os.chown(target, d.get("uid", 0), d.get("gid", 0))


def create_dev_links(rootfs: str) -> None:
    links = [("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
             ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr")]
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "/dev/core"))
    for src, dst in links:
        target = secure_join(rootfs, dst)
        if not os.path.lexists(target):
            os.symlink(src, target)
    ptmx = secure_join(rootfs, "/dev/ptmx")
    if os.path.isdir(secure_join(rootfs, "/dev/pts")):
        if os.path.lexists(ptmx):
            os.unlink(ptmx)
        os.symlink("pts/ptmx", ptmx)


def pivot(rootfs: str, no_pivot: bool) -> None:
    os.chdir(rootfs)
    if no_pivot:
        libc.mount(rootfs, "/", None, libc.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc.pivot_root(".", ".")
        # the old root is now stacked on "."; detach it without letting the unmount propagate
        os.fchdir(old_root)
        libc.mount(None, ".", None, libc.MS_SLAVE | libc.MS_REC)
        libc.umount(".", libc.MNT_DETACH)
        os.fchdir(new_root)
        os.chdir("/")
    finally:
        os.close(old_root)
        os.close(new_root)


def mask_paths(paths: list[str]) -> None:
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            libc.mount("tmpfs", path, "tmpfs", libc.MS_RDONLY, None)
        else:
            libc.mount("/dev/null", path, "bind", libc.MS_BIND)


def readonly_paths(paths: list[str]) -> None:
    for path in paths:
        try:
            libc.mount(path, path, "bind", libc.MS_BIND | libc.MS_REC)
        except SystemFailure as e:
            if e.errno == errno.ENOENT:
                continue
            raise
        libc.mount(None, path, None,
                   libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY | libc.MS_REC | existing_flags(path))


def readonly_root() -> None:
    libc.mount(None, "/", None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY | existing_flags("/"))


def set_sysctls(sysctl: dict[str, str]) -> None:
    for key, value in sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(str(value))
        except OSError as e:
            raise SystemFailure(f"sysctl {key}={value}: {e.strerror}", e.errno or 0) from None
