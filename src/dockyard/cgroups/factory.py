"""Choosing the manager for this host: v1 (including hybrid) or v2."""

from __future__ import annotations

from dockyard.cgroups import paths
from dockyard.cgroups.base import CgroupManager
from dockyard.cgroups.v1 import V1Manager
from dockyard.cgroups.v2 import V2Manager
from dockyard.errors import NotImplementedFeature


def new_manager(
    cgroups_path: str | None, container_id: str, *, systemd: bool = False, root: str = paths.DEFAULT_ROOT
) -> CgroupManager:
    """The manager for a container's cgroup (nothing is created until ``create()``).

    `cgroups_path` is the spec's linux.cgroupsPath (see ``paths`` for its meaning and the
    default); `root` is where the hierarchies are mounted (tests point it at a fake tree: a
    directory with cgroup.controllers is read as v2, anything else as a v1 layout).
    """
    if systemd:
        raise NotImplementedFeature("systemd cgroup driver")
    path = paths.normalise(cgroups_path, container_id)
    if paths.is_unified(root):
        return V2Manager.open(path, root)
    return V1Manager.open(path, root)
