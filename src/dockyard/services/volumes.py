"""Volumes: Docker's `local` volume driver over ``<data-root>/volumes``.

On disk, per volume:

    <data-root>/volumes/<name>/volume.json   the record (Volume below), written atomically
    <data-root>/volumes/<name>/_data         the content, or the mount point when the volume has
                                             DriverOpts (type/device/o, as mount(8) takes them)

Users. A container claims the volumes it names when it is created (and again when a restarted
daemon restores it) and releases them when it is removed: a claimed volume cannot be removed,
even while its containers are stopped (dockerd's "volume is in use").

Mounts. A volume with DriverOpts is mounted on its ``_data`` at its first active user (a
container being started) and unmounted when the last one goes (a reference count by container
ID), and when the daemon shuts down.

Copy-up. When a container mounts an empty volume on a path that holds a directory with content
in its image, that content is copied into the volume first (modes, owners, symlinks, xattrs),
unless the mount says `nocopy`.

The methods do blocking I/O; the daemon calls them in a worker thread. One lock serialises
every change of state.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from dockyard.errors import AlreadyExists, InvalidArgument, NotFound, NotImplementedFeature, SystemFailure, WrongState
from dockyard.linux import libc
from dockyard.utils.fileio import write_json_atomic

log = logging.getLogger("dockyard.services.volumes")

DRIVER = "local"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"  # dockerd marks the volumes it names itself so
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
VALID_OPTS = ("type", "device", "o", "size")
REQUIRED_OPTS = {"device": ("type",), "type": ("device",), "o": ("device", "type")}

# mount(8)'s flag words in `o` (value: (flag, set it)); anything else goes to the filesystem as data
_MOUNT_FLAGS: dict[str, tuple[int, bool]] = {
    "ro": (libc.MS_RDONLY, True), "rw": (libc.MS_RDONLY, False),
    "nosuid": (libc.MS_NOSUID, True), "suid": (libc.MS_NOSUID, False),
    "nodev": (libc.MS_NODEV, True), "dev": (libc.MS_NODEV, False),
    "noexec": (libc.MS_NOEXEC, True), "exec": (libc.MS_NOEXEC, False),
    "sync": (libc.MS_SYNCHRONOUS, True), "async": (libc.MS_SYNCHRONOUS, False),
    "dirsync": (libc.MS_DIRSYNC, True), "noatime": (libc.MS_NOATIME, True), "atime": (libc.MS_NOATIME, False),
    "nodiratime": (libc.MS_NODIRATIME, True), "diratime": (libc.MS_NODIRATIME, False),
    "relatime": (libc.MS_RELATIME, True), "norelatime": (libc.MS_RELATIME, False),
    "strictatime": (libc.MS_STRICTATIME, True), "bind": (libc.MS_BIND, True),
    "rbind": (libc.MS_BIND | libc.MS_REC, True), "defaults": (0, True),
}


def is_mountpoint(path: str) -> bool:
    """Whether something is mounted on `path` (os.path.ismount misses a bind mount within one filesystem)."""
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                point = line.split(b" ", 5)[4]
                if point == os.fsencode(real) or _unescape(point) == real:
                    return True
    except OSError:
        return os.path.ismount(path)
    return False


def _unescape(field: bytes) -> str:
    return os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field))


def now_rfc3339() -> str:
    """dockerd's CreatedAt: RFC 3339 with the local offset, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Volume:
    name: str
    driver: str = DRIVER
    created_at: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)   # DriverOpts, as given

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels


@dataclass
class MountOptions:
    """DriverOpts turned into one mount(2) call."""
    fstype: str
    device: str
    flags: int
    data: str

    @property
    def bind(self) -> bool:
        return bool(self.flags & libc.MS_BIND)


def parse_driver_opts(opts: dict[str, str]) -> MountOptions | None:
    """Validate DriverOpts like dockerd's local driver; None when the volume is a plain directory."""
    if not opts:
        return None
    for key in opts:
        if key not in VALID_OPTS:
            raise InvalidArgument(f'invalid option: "{key}" (the local driver takes: type, device, o)')
    if "size" in opts:
        raise NotImplementedFeature("volume option size (a quota needs an xfs backing filesystem with pquota)")
    for key, required in REQUIRED_OPTS.items():
        if key in opts:
            for other in required:
                if other not in opts:
                    raise InvalidArgument(f'missing required option: "{other}" (with "{key}")')
    fstype, device = opts["type"], opts["device"]
    if not fstype or not device:
        raise InvalidArgument("volume options: type and device must not be empty")
    flags = 0
    data: list[str] = []
    for word in (w.strip() for w in opts.get("o", "").split(",")):
        if not word:
            continue
        if word in _MOUNT_FLAGS:
            bit, on = _MOUNT_FLAGS[word]
            flags = flags | bit if on else flags & ~bit
        else:
            data.append(word)
    result = MountOptions(fstype, device, flags, ",".join(data))
    if result.bind:
        if not device.startswith("/"):
            raise InvalidArgument(f"volume options: bind device {device!r} must be an absolute path")
        if not os.path.exists(device):
            raise InvalidArgument(f"volume options: bind device {device} does not exist")
        if data:
            raise InvalidArgument(f"volume options: unknown bind mount options: {','.join(data)}")
    elif fstype == "none":
        raise InvalidArgument('volume options: type "none" needs o=bind (or rbind)')
    return result


class VolumeService:
    def __init__(self, data_root: str) -> None:
        self.root = os.path.join(data_root, "volumes")
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        self._lock = threading.RLock()
        self.volumes: dict[str, Volume] = {}
        self._users: dict[str, set[str]] = {}    # volume -> IDs of the containers that claim it
        self._active: dict[str, set[str]] = {}   # volume -> IDs of the containers that have it mounted now
        self._load()

    # --- records ------------------------------------------------------------------------

    def dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def mountpoint(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def _save(self, v: Volume) -> None:
        write_json_atomic(os.path.join(self.dir(v.name), "volume.json"), asdict(v), 0o600)

    def _load(self) -> None:
        for name in sorted(os.listdir(self.root)):
            path = os.path.join(self.root, name, "volume.json")
            try:
                with open(path) as f:
                    self.volumes[name] = Volume(**json.load(f))
            except FileNotFoundError:
                log.warning("volume %s: no record (an unfinished create): removing it", name)
                self._unmount_path(self.mountpoint(name))
                shutil.rmtree(self.dir(name), ignore_errors=True)
                continue
            except (OSError, ValueError, TypeError) as e:
                log.error("volume %s: unreadable record %s: %s", name, path, e)
                continue
            # a mount left by a daemon that died: the next user mounts it afresh
            self._unmount_path(self.mountpoint(name))

    # --- create, get, list, remove, prune ---------------------------------------------------

    def create(self, name: str = "", driver: str = "", driver_opts: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, anonymous: bool = False) -> Volume:
        """A new volume, or the existing one of that name (dockerd's create is idempotent); without
        a name, an anonymous volume with a random 64-hex name."""
        driver = driver or DRIVER
        if driver != DRIVER:  # dockerd's answer (a 404) for a volume plugin it cannot find
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found '
                           '(only the local driver exists here)')
        opts = {str(k): str(v) for k, v in (driver_opts or {}).items()}
        labels = {str(k): str(v) for k, v in (labels or {}).items()}
        parse_driver_opts(opts)
        if anonymous or not name:  # dockerd: a volume it names itself is anonymous
            labels.setdefault(ANONYMOUS_LABEL, "")
        with self._lock:
            if not name:
                name = secrets.token_hex(32)
                while name in self.volumes:
                    name = secrets.token_hex(32)
            elif not NAME_RE.match(name):
                raise InvalidArgument(f'"{name}" includes invalid characters for a local volume name, only '
                                      '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                                      'directory, use absolute path')
            existing = self.volumes.get(name)
            if existing is not None:
                if existing.driver != driver:
                    raise AlreadyExists(f"volume name {name} already exists with driver {existing.driver}")
                return existing
            v = Volume(name, driver, now_rfc3339(), labels, opts)
            os.makedirs(self.dir(name), mode=0o701)
            try:
                os.mkdir(self.mountpoint(name), 0o755)
                self._save(v)
            except BaseException:
                shutil.rmtree(self.dir(name), ignore_errors=True)
                raise
            self.volumes[name] = v
            return v

    def get(self, name: str) -> Volume:
        v = self.volumes.get(name)
        if v is None:
            raise NotFound(f"get {name}: no such volume")
        return v

    def list(self) -> list[Volume]:
        return sorted(self.volumes.values(), key=lambda v: v.name)

    def users(self, name: str) -> list[str]:
        return sorted(self._users.get(name, set()) | self._active.get(name, set()))

    def remove(self, name: str, force: bool = False) -> None:
        """Remove an unused volume; force: a missing one is no error (as dockerd's purge)."""
        with self._lock:
            v = self.volumes.get(name)
            if v is None:
                if force:
                    return
                raise NotFound(f"get {name}: no such volume")
            users = self.users(name)
            if users:
                raise WrongState(f"remove {name}: volume is in use - [{', '.join(users)}]")
            self._unmount_path(self.mountpoint(name))
            del self.volumes[name]
            self._users.pop(name, None)
            # the record first: a half-removed volume is not found again at the next start
            try:
                os.unlink(os.path.join(self.dir(name), "volume.json"))
            except FileNotFoundError:
                pass
            shutil.rmtree(self.dir(name), ignore_errors=True)

    def prune(self, keep: Callable[[Volume], bool] | None = None) -> tuple[list[str], int]:
        """Remove every unused volume that `keep` does not keep: (names, bytes reclaimed)."""
        removed: list[str] = []
        reclaimed = 0
        with self._lock:
            for v in self.list():
                if self.users(v.name) or (keep is not None and keep(v)):
                    continue
                size = self.size(v.name)
                try:
                    self.remove(v.name)
                except (WrongState, OSError, SystemFailure) as e:
                    log.warning("prune: volume %s kept: %s", v.name, e)
                    continue
                removed.append(v.name)
                reclaimed += size
        return removed, reclaimed

    def size(self, name: str) -> int:
        """Bytes under the volume's _data (only while it is not a mount of another filesystem)."""
        total = 0
        for directory, _dirs, files in os.walk(self.mountpoint(name)):
            for f in files:
                try:
                    total += os.lstat(os.path.join(directory, f)).st_blocks * 512
                except OSError:
                    continue
        return total

    # --- containers -------------------------------------------------------------------------

    def claim(self, name: str, container_id: str) -> Volume:
        with self._lock:
            v = self.get(name)
            self._users.setdefault(name, set()).add(container_id)
            return v

    def release(self, container_id: str) -> list[str]:
        """Forget a removed container: every volume it claimed (names), unmounted if it was the last user."""
        released = []
        with self._lock:
            self.unmount_container(container_id)
            for name, users in list(self._users.items()):
                if container_id in users:
                    users.discard(container_id)
                    released.append(name)
                    if not users:
                        del self._users[name]
        return released

    def mount(self, name: str, container_id: str) -> str:
        """The volume's host path, mounted for this container (the first active user mounts it)."""
        with self._lock:
            v = self.get(name)
            path = self.mountpoint(name)
            active = self._active.setdefault(name, set())
            if not active and v.options and not is_mountpoint(path):
                opts = parse_driver_opts(v.options)
                assert opts is not None
                self._mount(name, opts, path)
            active.add(container_id)
            return path

    def unmount(self, name: str, container_id: str) -> None:
        with self._lock:
            active = self._active.get(name)
            if active is None or container_id not in active:
                return
            active.discard(container_id)
            if not active:
                del self._active[name]
                v = self.volumes.get(name)
                if v is not None and v.options:
                    self._unmount_path(self.mountpoint(name))

    def unmount_container(self, container_id: str) -> None:
        with self._lock:
            for name in [n for n, ids in self._active.items() if container_id in ids]:
                self.unmount(name, container_id)

    def close(self) -> None:
        """Daemon shutdown: unmount every volume mount (running containers keep their own copy)."""
        with self._lock:
            for name in list(self._active):
                self._unmount_path(self.mountpoint(name))
            self._active.clear()

    def _mount(self, name: str, opts: MountOptions, path: str) -> None:
        try:
            if opts.bind:
                libc.mount(opts.device, path, None, opts.flags & (libc.MS_BIND | libc.MS_REC))
                if opts.flags & ~(libc.MS_BIND | libc.MS_REC):
                    try:
                        libc.mount(None, path, None, libc.MS_BIND | libc.MS_REMOUNT | opts.flags)
                    except SystemFailure:
                        libc.umount(path, libc.MNT_DETACH)
                        raise
            else:
                libc.mount(opts.device, path, opts.fstype, opts.flags, opts.data or None)
        except SystemFailure as e:
            raise SystemFailure(f"volume {name}: failed to mount local volume: mount {opts.device}:{path}, "
                                f"type {opts.fstype}, flags 0x{opts.flags:x}, data {opts.data!r}: "
                                f"{os.strerror(e.errno) if e.errno else e}", e.errno) from None

    @staticmethod
    def _unmount_path(path: str) -> None:
        while is_mountpoint(path):
            try:
                libc.umount(path, libc.MNT_DETACH | libc.UMOUNT_NOFOLLOW)
            except SystemFailure as e:
                if e.errno in (errno.EINVAL, errno.ENOENT):
                    return
                raise

    # --- copy-up ---------------------------------------------------------------------------

    def populate(self, name: str, rootfs: str, destination: str) -> bool:
        """Copy the image's content at `destination` into the volume when the volume is empty.

        The path is resolved inside `rootfs` (symlinks cannot lead out of it). True when copied."""
        path = self.mountpoint(name)
        with self._lock:
            if os.listdir(path):
                return False
            root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                try:
                    src = libc.openat2(root, destination, os.O_RDONLY | os.O_DIRECTORY, libc.RESOLVE_IN_ROOT)
                except SystemFailure as e:
                    if e.errno in (errno.ENOENT, errno.ENOTDIR):
                        return False
                    raise
            finally:
                os.close(root)
            try:
                if not os.listdir(src):
                    return False
                _copy_attributes(os.stat(src), path, f"/proc/self/fd/{src}")
                _copy_tree(src, path)
            finally:
                os.close(src)
            return True


def _copy_attributes(st: os.stat_result, target: str, source: str | None) -> None:
    """Owner, mode (after the owner: chown clears set-id bits), xattrs and times; never follows a link."""
    os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(target, stat.S_IMODE(st.st_mode))
        if source is not None:
            _copy_xattrs(source, target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_xattrs(source: str, target: str) -> None:
    try:
        names = os.listxattr(source)
    except OSError:
        return
    for attr in names:
        try:
            os.setxattr(target, attr, os.getxattr(source, attr))
        except OSError as e:
            log.debug("copy-up: xattr %s on %s: %s", attr, target, e)


def _copy_tree(src_fd: int, target: str) -> None:
    """Copy the directory open at `src_fd` into `target` (an existing directory), entry by entry,
    through descriptors so that nothing in the image is followed."""
    with os.scandir(src_fd) as entries:
        items = [(e.name, e.stat(follow_symlinks=False)) for e in entries]
    for name, st in items:
        dst = os.path.join(target, name)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
            try:
                os.mkdir(dst, 0o700)
                _copy_tree(fd, dst)
                _copy_attributes(st, dst, f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=src_fd), dst)
            _copy_attributes(st, dst, None)
        elif stat.S_ISREG(mode):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
            try:
                out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                try:
                    while os.sendfile(out, fd, None, 1 << 24) > 0:
                        pass
                finally:
                    os.close(out)
                _copy_attributes(st, dst, f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
            if stat.S_ISSOCK(mode):
                continue  # a socket in an image is a leftover: dockerd skips it too
            os.mknod(dst, mode, st.st_rdev)
            _copy_attributes(st, dst, None)


# --- a container's mount points ------------------------------------------------------------


def mount_point(kind: str, destination: str, *, name: str = "", source: str = "", driver: str = "", mode: str = "",
                rw: bool = True, propagation: str = "", nocopy: bool = False) -> dict[str, Any]:
    """One entry of a container's mount points, the engine's record behind inspect's Mounts."""
    return {"type": kind, "name": name, "source": source, "destination": destination, "driver": driver,
            "mode": mode, "rw": rw, "propagation": propagation, "nocopy": nocopy}


def plan_mounts(config: dict[str, Any], host_config: dict[str, Any],
                inherited: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The mount points a create request asks for: `inherited` ones (--volumes-from) unless the
    request mounts something else there, HostConfig.Binds, HostConfig.Mounts (bind, volume,
    tmpfs) and an anonymous volume for each Config.Volumes path (give the image's too) that
    nothing else covers. A volume's name is "" when it is a new anonymous one; a volume entry
    may carry "driver_opts" and "labels" for the volume it creates."""
    from dockyard.services.model import check_target as _check_target, parse_bind

    default_driver = str(host_config.get("VolumeDriver") or DRIVER)
    out: list[dict[str, Any]] = []
    for spec in host_config.get("Binds") or []:
        b = parse_bind(str(spec))
        if b.is_volume:
            out.append(mount_point("volume", b.target, name=b.source, driver=default_driver, mode=b.mode or "z",
                                   rw=not b.readonly, nocopy=b.nocopy))
        else:
            out.append(mount_point("bind", b.target, source=b.source, mode=b.mode, rw=not b.readonly,
                                   propagation=b.propagation or "rprivate"))
    for item in host_config.get("Mounts") or []:
        kind = item.get("Type")
        target = _check_target(str(item.get("Target") or item.get("Destination") or ""), "HostConfig.Mounts")
        rw = not item.get("ReadOnly")
        if kind == "bind":
            propagation = (item.get("BindOptions") or {}).get("Propagation") or "rprivate"
            out.append(mount_point("bind", target, source=str(item.get("Source") or ""), rw=rw, propagation=propagation))
        elif kind == "volume":
            options = item.get("VolumeOptions") or {}
            if options.get("Subpath"):
                raise NotImplementedFeature("HostConfig.Mounts: VolumeOptions.Subpath")
            driver_config = options.get("DriverConfig") or {}
            entry = mount_point("volume", target, name=str(item.get("Source") or ""),
                                driver=str(driver_config.get("Name") or default_driver), rw=rw,
                                nocopy=bool(options.get("NoCopy")))
            entry["driver_opts"] = dict(driver_config.get("Options") or {})
            entry["labels"] = dict(options.get("Labels") or {})
            out.append(entry)
        elif kind == "tmpfs":
            out.append(mount_point("tmpfs", target, rw=rw))
    covered = {m["destination"] for m in out}
    covered |= {os.path.normpath(t) for t in (host_config.get("Tmpfs") or {})}
    for m in inherited or []:
        if m["destination"] not in covered:
            covered.add(m["destination"])
            out.append(m)
    for path in sorted(config.get("Volumes") or {}):
        target = _check_target(str(path), "Config.Volumes")
        if target not in covered:
            covered.add(target)
            out.append(mount_point("volume", target, driver=default_driver))
    return out
