"""The cgroup manager interface shared by the v1 and v2 implementations.

Call order for a container (what runc's cgroupfs driver does): ``create()``, ``set(resources)``,
then the process joins -- ``add_process(pid)`` from outside, or ``join_self()`` from a freshly
forked, single-threaded child (the runtime's way: cheaper, see V1Manager.join_self). Set comes
before the init joins, so that realtime CPU bandwidth exists before a SCHED_RR process arrives. ``to_dict()`` goes into the container's
state; ``manager_from_dict`` gives back a manager on the same directories, whatever cgroup
the later caller runs in.
"""

from __future__ import annotations

import errno
import os
from abc import ABC, abstractmethod

from dockyard.cgroups import fs
from dockyard.errors import InvalidArgument, NotImplementedFeature, SystemFailure

TYPE_CHECKING = False  # typing is not imported at run time: the runtime CLI must start fast
if TYPE_CHECKING:
    from typing import Any, ClassVar

SIGKILL = 9  # signal.SIGKILL, without importing signal (and enum) on the runtime's hot path


def implementation(version: object) -> type[CgroupManager] | None:
    """The manager class for a saved state's ``version``, importing only that one."""
    if type(version) is not int:
        return None
    if version == 1:
        from dockyard.cgroups.v1 import V1Manager

        return V1Manager
    if version == 2:
        from dockyard.cgroups.v2 import V2Manager

        return V2Manager
    return None


class CgroupManager(ABC):
    """One container's cgroup, in every hierarchy it needs."""

    version: ClassVar[int]
    path: str  # the normalised cgroupsPath (see paths.normalise)

    @abstractmethod
    def create(self) -> None:
        """Make the directories (idempotent)."""

    @abstractmethod
    def add_process(self, pid: int) -> None:
        """Move `pid` into the cgroup in every hierarchy."""

    def join_self(self) -> None:
        """Move the calling process into the cgroup; it must be single-threaded (a child of fork())."""
        if not self._born_inside:
            self.add_process(os.getpid())

    _born_inside = False  # True in a child that fork() placed in the v2 directory at birth

    def v2_dir(self) -> str | None:
        """The container's directory in the v2 hierarchy, if there is one."""
        return None

    def fork(self) -> int:
        """os.fork() for a child that will join this cgroup (with join_self). Where there is a v2
        directory the child is born in it (clone3 CLONE_INTO_CGROUP): moving it there later takes
        the kernel's global threadgroup lock, whose first use waits for an RCU grace period
        (~11 ms on the test machine). Falls back to a plain fork where the kernel refuses."""
        directory = self.v2_dir()
        if directory is None:
            return os.fork()
        from dockyard.linux import libc

        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return os.fork()
        try:
            pid = libc.fork_into_cgroup(fd)
        except SystemFailure:
            return os.fork()  # kernel before 5.7, or a cgroup it will not place us in: join_self says why
        finally:
            os.close(fd)
        if pid == 0:
            self._born_inside = True
        return pid

    @abstractmethod
    def set(self, resources: dict[str, Any]) -> None:
        """Apply an OCI ``linux.resources`` object; validates all of it before writing any of it."""

    @abstractmethod
    def freeze(self) -> None:
        """Freeze every process; returns once the kernel reports the cgroup frozen."""

    @abstractmethod
    def thaw(self) -> None: ...

    @abstractmethod
    def is_frozen(self) -> bool: ...

    @abstractmethod
    def pids(self) -> list[int]:
        """Every process in the cgroup and its sub-cgroups."""

    @abstractmethod
    def stats(self) -> dict[str, Any]:
        """The ``data`` of ``runc events --stats``: cpu, cpuset, memory, pids, blkio, hugetlb."""

    @abstractmethod
    def destroy(self) -> None:
        """Remove the directories, deepest first; already-missing ones are fine."""

    @abstractmethod
    def mounts(self) -> list[tuple[str, str]]:
        """(name, host directory) to bind at /sys/fs/cgroup/<name> in the container ("" on v2)."""

    @abstractmethod
    def oom_kill_count(self) -> int:
        """How many processes the OOM killer has killed in this cgroup."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def _kill_file_dir(self) -> str | None:
        """A cgroup2 directory whose ``cgroup.kill`` reaches all our processes, if there is one."""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CgroupManager:
        """The manager that `to_dict` described; dispatches on ``d["version"]``."""
        version = d.get("version")
        impl = implementation(version)
        if impl is None:
            raise InvalidArgument(f"saved cgroup state has unknown version {version!r}")
        if impl is cls or cls is CgroupManager:
            return impl._load(d)
        raise InvalidArgument(f"saved cgroup state is version {version}, not {cls.version}")

    @classmethod
    @abstractmethod
    def _load(cls, d: dict[str, Any]) -> CgroupManager: ...

    def kill_all(self, sig: int) -> None:
        """Signal every process in the cgroup.

        SIGKILL goes through the kernel's cgroup.kill where there is one (5.14+, v2 or hybrid).
        Otherwise the cgroup is frozen while we signal, so that nothing forks past the list,
        then returned to its previous state -- except that SIGKILL always thaws, or the victims
        could not die. Without a freezer (a v1 host with no freezer hierarchy) the signals go
        out unfrozen, as runc does.
        """
        if sig == SIGKILL and self._cgroup_kill():
            if self.is_frozen():
                self.thaw()
            return
        was_frozen = self.is_frozen()
        froze = False
        if not was_frozen:
            try:
                self.freeze()
                froze = True
            except NotImplementedFeature:
                pass
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if froze or (was_frozen and sig == SIGKILL):
                self.thaw()

    def _cgroup_kill(self) -> bool:
        directory = self._kill_file_dir()
        if directory is None:
            return False
        try:
            fs.write(directory, "cgroup.kill", "1")
        except SystemFailure as e:
            if e.errno == errno.ENOENT:
                return False
            raise
        return True
