"""The on-disk state of a container and its lifecycle status.

Layout under the runtime root (default /run/dockyard-runtime):
    <root>/<id>/state.json   written atomically; see `ContainerState`
    <root>/<id>/front        the same state for the native front (see dockyard.runtime.front)
    <root>/<id>/exec.fifo    exists from create until start: the init blocks opening it
The status is derived from the kernel each time it is asked for (is the init alive, is it the
same process, is the cgroup frozen, is the fifo still there), never trusted from disk.
"""

from __future__ import annotations

import errno
import fcntl
import os

from dockyard.utils import fastjson as json
from dockyard.errors import AlreadyExists, InvalidSpec, NotFound, WrongState
from dockyard.utils.fileio import write_atomic, write_json_atomic

TYPE_CHECKING = False  # typing is not imported at run time: this CLI must start fast
if TYPE_CHECKING:
    from typing import Any

DEFAULT_ROOT = "/run/dockyard-runtime"
# compiled seccomp programs (security.seccomp.compile_filter's cache), beside the containers'
# directories; "@" cannot start a container ID, so no container can collide with it
SECCOMP_CACHE = "@seccomp-cache"

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"


class ContainerState:
    """What state.json holds. (A plain class: dataclasses cost milliseconds to import.)"""

    FIELDS = ("id", "bundle", "rootfs", "pid", "pid_start", "created", "config", "cgroup", "owner", "status_hint")

    def __init__(self, id: str, bundle: str, rootfs: str, pid: int, pid_start: int, created: str,
                 config: dict[str, Any], cgroup: dict[str, Any] | None = None, owner: str = "",
                 status_hint: str = CREATED) -> None:
        self.id = id
        self.bundle = bundle
        self.rootfs = rootfs
        self.pid = pid
        self.pid_start = pid_start  # the init's start time (field 22 of /proc/<pid>/stat) against pid reuse
        self.created = created
        self.config = config
        self.cgroup = cgroup or {}
        self.owner = owner
        self.status_hint = status_hint  # creating until create has an init (not the status: see `status`)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}


def process_start_time(pid: int) -> int | None:
    """Start time of a live process, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class StateStore:
    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = os.path.abspath(root)

    def dir(self, container_id: str) -> str:
        return os.path.join(self.root, container_id)

    def fifo(self, container_id: str) -> str:
        return os.path.join(self.dir(container_id), "exec.fifo")

    def reserve(self, container_id: str) -> str:
        """Create the container's directory; fail if the id is taken."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        path = self.dir(container_id)
        try:
            os.mkdir(path, 0o711)
        except FileExistsError:
            raise AlreadyExists(f"container {container_id!r} already exists") from None
        return path

    def save(self, state: ContainerState) -> None:
        """state.json, and the native front's summary of it (dockyard.runtime.front) first."""
        from dockyard.runtime import front

        directory = self.dir(state.id)
        summary = front.text(state)
        if summary is None:
            try:
                os.unlink(os.path.join(directory, front.NAME))
            except FileNotFoundError:
                pass
        else:
            write_atomic(os.path.join(directory, front.NAME), summary.encode(), 0o600, sync=False)
        write_json_atomic(os.path.join(directory, "state.json"), state.to_json(), 0o600, sync=False)

    def load(self, container_id: str) -> ContainerState:
        path = os.path.join(self.dir(container_id), "state.json")
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"container {container_id!r} does not exist") from None
        except ValueError as e:
            raise InvalidSpec(f"{path}: corrupt state file: {e}") from None
        return ContainerState(**{k: data[k] for k in ContainerState.FIELDS if k in data})

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if os.path.exists(os.path.join(self.root, n, "state.json")))

    def remove(self, container_id: str) -> None:
        """Remove the container's directory (it holds only flat files)."""
        path = self.dir(container_id)
        try:
            names = os.listdir(path)
        except FileNotFoundError:
            return
        for name in names:
            try:
                os.unlink(os.path.join(path, name))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass

    def lock(self, container_id: str) -> int:
        """An exclusive lock on the container for the duration of one command; returns its fd."""
        path = self.dir(container_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"container {container_id!r} does not exist") from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd


def status(store: StateStore, state: ContainerState, freezer_state: bool | None = None) -> str:
    """The status as the kernel sees it now."""
    if state.pid <= 0 or process_start_time(state.pid) != state.pid_start:
        return STOPPED
    if freezer_state:
        return PAUSED
    if os.path.exists(store.fifo(state.id)):
        return CREATED
    return RUNNING


def require(current: str, allowed: tuple[str, ...], action: str, container_id: str) -> None:
    if current not in allowed:
        raise WrongState(f"cannot {action} container {container_id!r}: it is {current} (needs {' or '.join(allowed)})")


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True
