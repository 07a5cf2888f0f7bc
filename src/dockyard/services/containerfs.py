"""A container's filesystem: `docker cp` (archive), export, diff (changes) and commit.

A running (or paused) container, or a created one whose init waits for `start`, is reached
through `/proc/<pid>/root`, so bind mounts and volumes are seen as the container sees them; a stopped one through its snapshot, mounted for the time of
the operation under the container lock (so it cannot start meanwhile).
"""

from __future__ import annotations

import asyncio
import os
import posixpath
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, BinaryIO

from dockyard.errors import NotFound, WrongState
from dockyard.image import containers as image_containers
from dockyard.image.model import Image
from dockyard.services import fscopy
from dockyard.services.containers import Container, ContainerService
from dockyard.snapshot import Change

# Mount points the runtime creates in every rootfs: Docker keeps them in an "init" layer so
# that they never show in `docker diff`; here they are filtered out of the changes.
_MOUNT_POINTS = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev", "/proc", "/sys", "/dev/console",
                 "/dev/pts", "/dev/shm", "/dev/mqueue", "/etc/mtab")


class ContainerFilesystem:
    def __init__(self, containers: ContainerService) -> None:
        self.containers = containers

    @asynccontextmanager
    async def root(self, c: Container) -> AsyncIterator[int]:
        """A descriptor of the container's root directory (see the module docstring)."""
        fd = -1
        if c.state.status in ("running", "paused", "created") and c.state.pid:
            # a created container's init has built its root (volumes included) and waits for start
            try:
                fd = os.open(f"/proc/{c.state.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as e:
                if c.state.status != "created":
                    raise WrongState(f"container {c.id[:12]}: its root is not reachable: {e.strerror}") from None
        if fd >= 0:
            try:
                yield fd
            finally:
                os.close(fd)
            return
        async with self.containers.lock(c.id):
            rootfs = os.path.join(self.containers.bundle(c.id), "rootfs")
            mounted_here = not os.path.ismount(rootfs)
            await self.containers.mount_rootfs(c)
            fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                yield fd
            finally:
                os.close(fd)
                if mounted_here and c.state.status not in ("running", "paused"):
                    await self.containers.unmount_rootfs(c.id)

    @asynccontextmanager
    async def root_for(self, c: Container, path: str, *, into: bool = False) -> AsyncIterator[tuple[int, str]]:
        """(root descriptor, path under it) for `path` in the container. A container without a
        live root does not have its volumes and binds mounted: a path inside one of them
        (`into`: or the mount point itself, to extract into) is reached in its host directory."""
        found = None if c.state.status in ("running", "paused") else _in_mount(c, path, into)
        if found is not None and not await asyncio.to_thread(_root_is_live, c):
            source, inner = found
            fd = os.open(source, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                yield fd, inner
            finally:
                os.close(fd)
            return
        async with self.root(c) as fd:
            yield fd, path

    async def stat(self, ref: str, path: str) -> fscopy.PathStat:
        c = self.containers.get(ref)
        async with self.root_for(c, path) as (fd, inner):
            with _named(c):
                return await asyncio.to_thread(fscopy.stat_path, fd, inner)

    async def get_archive(self, ref: str, path: str, out: BinaryIO) -> None:
        c = self.containers.get(ref)
        async with self.root_for(c, path) as (fd, inner):
            with _named(c):
                await asyncio.to_thread(fscopy.read_archive, fd, inner, out)

    async def put_archive(self, ref: str, path: str, source: BinaryIO, options: fscopy.ExtractOptions) -> int:
        c = self.containers.get(ref)
        if c.host_config.get("ReadonlyRootfs") and c.state.status in ("running", "paused"):
            raise WrongState("container rootfs is marked read-only")
        async with self.root_for(c, path, into=True) as (fd, inner):
            with _named(c):
                return await asyncio.to_thread(fscopy.write_archive, fd, inner, source, options)

    async def export(self, ref: str, out: BinaryIO) -> None:
        c = self.containers.get(ref)
        store = self.containers.images.store
        async with self.containers.lock(c.id):
            rootfs = os.path.join(self.containers.bundle(c.id), "rootfs")
            if os.path.ismount(rootfs):
                await asyncio.to_thread(image_containers.export, out, rootfs=rootfs)
            else:
                await asyncio.to_thread(image_containers.export_snapshot, store, c.id, out)

    async def changes(self, ref: str) -> list[Change]:
        c = self.containers.get(ref)
        found = await asyncio.to_thread(image_containers.diff, self.containers.images.store, c.id)
        return _without_mount_points(found)

    async def commit(self, ref: str, *, reference: str | None, config: dict[str, Any] | None, changes: list[str],
                     author: str, message: str, pause: bool) -> Image:
        c = self.containers.get(ref)
        paused_here = False
        if pause and c.state.status == "running":
            try:
                await self.containers.pause(c.id)
                paused_here = True
            except (WrongState, NotFound):
                pass  # it is exiting right now: nothing runs that could change its files
        try:
            image_config = _commit_config(c, config)
            image = await asyncio.to_thread(
                image_containers.commit, self.containers.images.store, c.id, reference=reference,
                container_config=image_config, changes=changes, author=author, message=message,
                created_by=" ".join([c.path, *c.args]), container_id=c.id)
        finally:
            if paused_here:
                try:
                    await self.containers.unpause(c.id)
                except (WrongState, NotFound):
                    pass  # it exited meanwhile
        self.containers.events.publish("container", "commit", c.id, {"name": c.name, "image": c.image,
                                                                        "comment": message})
        return image


def _root_is_live(c: Container) -> bool:
    return c.state.status == "created" and bool(c.state.pid) and os.path.exists(f"/proc/{c.state.pid}/root/")


def _in_mount(c: Container, path: str, into: bool) -> tuple[str, str] | None:
    """(host directory, path inside it) when `path` lies in one of the container's volumes or
    binds (the innermost); the mount point itself only with `into`."""
    clean = "/" + posixpath.normpath("/" + path).lstrip("/")  # normpath keeps a leading "//"
    best: tuple[str, str] | None = None
    for m in c.mounts:
        dest, source = m.get("destination", ""), m.get("source", "")
        if m.get("type") not in ("volume", "bind") or not source or not os.path.isdir(source):
            continue
        if clean.startswith(dest.rstrip("/") + "/") or (into and clean == dest):
            if best is None or len(dest) > len(best[0]):
                best = (dest, source)
    if best is None:
        return None
    return best[1], "/" + clean[len(best[0]):].lstrip("/")


@contextmanager
def _named(c: Container) -> Iterator[None]:
    """Docker's "... in container NAME" on a path that is not there."""
    try:
        yield
    except NotFound as e:
        raise NotFound(f"{e} {c.name}") from None


def _without_mount_points(found: list[Change]) -> list[Change]:
    kept = [ch for ch in found if ch.path not in _MOUNT_POINTS and not ch.path.startswith(("/proc/", "/sys/"))]
    paths = {ch.path for ch in kept}
    out = []
    for ch in kept:
        # a directory shown only because a mount point was made in it (e.g. /etc for /etc/hosts)
        if ch.kind == 0 and not any(p.startswith(ch.path.rstrip("/") + "/") for p in paths if p != ch.path):
            if any(m.startswith(ch.path.rstrip("/") + "/") for m in _MOUNT_POINTS):
                continue
        out.append(ch)
    return out


_IMAGE_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts", "Tty",
               "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes", "WorkingDir",
               "Entrypoint", "NetworkDisabled", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell")


def _commit_config(c: Container, override: dict[str, Any] | None) -> dict[str, Any]:
    """The new image's config: the container's (its image's defaults merged in at create), the
    request's fields on top; per-container fields (hostname, image, attach flags) dropped."""
    cfg = {k: v for k, v in c.config.items() if k in _IMAGE_KEYS and v not in (None, "", [], {})}
    for key in ("Hostname", "Domainname", "Image", "AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin",
                "StdinOnce"):
        cfg.pop(key, None)
    for key, value in (override or {}).items():
        if value not in (None, "", [], {}) and key in _IMAGE_KEYS:
            cfg[key] = value
    return cfg
