"""cgroup v1 and v2 managers for the OCI runtime.

Modules: ``base`` (the CgroupManager interface), ``v1``/``v2`` (the managers), ``resources``
(validating OCI linux.resources, v2 formulas), ``devices`` (device rules and the v1
devices-cgroup emulator), ``ebpf`` (the v2 device filter), ``paths`` (cgroupsPath semantics,
hierarchy discovery), ``stats`` (runc's events shape), ``fs`` (control-file I/O), ``record``
(the immutable value base of ``resources`` and ``devices``).

Every ``dockyard-runtime`` call goes through here, so importing this package costs little:
``new_manager`` and ``manager_from_dict`` load only the manager the host (or the saved state)
needs, and the other public names load on first use (module ``__getattr__``). ``resources``,
``devices`` and ``stats`` load only for ``set`` and ``stats``, and even then neither
``typing``, ``dataclasses``, ``re`` nor ``enum`` loads (their values are ``record.Record``
classes); ``ctypes`` loads only for the v2 eBPF device filter.
tests/unit/test_cgroups_imports.py keeps it so.
"""

from __future__ import annotations

from dockyard.cgroups import paths
from dockyard.errors import NotImplementedFeature

TYPE_CHECKING = False  # typing is not imported at run time: the runtime CLI must start fast
if TYPE_CHECKING:
    from typing import Any

    from dockyard.cgroups.base import CgroupManager
    from dockyard.cgroups.paths import current_cgroup_paths
    from dockyard.cgroups.resources import Resources, parse_resources
    from dockyard.cgroups.v1 import V1Manager
    from dockyard.cgroups.v2 import V2Manager

__all__ = [
    "CgroupManager",
    "Resources",
    "V1Manager",
    "V2Manager",
    "current_cgroup_paths",
    "manager_from_dict",
    "new_manager",
    "parse_resources",
]

# public name -> the module that defines it, imported on first access
_LAZY = {
    "CgroupManager": "dockyard.cgroups.base",
    "Resources": "dockyard.cgroups.resources",
    "V1Manager": "dockyard.cgroups.v1",
    "V2Manager": "dockyard.cgroups.v2",
    "current_cgroup_paths": "dockyard.cgroups.paths",
    "parse_resources": "dockyard.cgroups.resources",
}


def new_manager(
    cgroups_path: str | None, container_id: str, *, systemd: bool = False, root: str = paths.DEFAULT_ROOT
) -> CgroupManager:
    """The manager for a container's cgroup (nothing is created until ``create()``).

    `cgroups_path` is the spec's linux.cgroupsPath (see ``paths`` for its meaning and the
    default); `root` is where the hierarchies are mounted (tests point it at a fake tree: a
    directory with cgroup.controllers is read as v2, anything else as a v1 layout). Only the
    manager module for that layout is imported.
    """
    if systemd:
        raise NotImplementedFeature("systemd cgroup driver")
    path = paths.normalise(cgroups_path, container_id)
    if paths.is_unified(root):
        from dockyard.cgroups.v2 import V2Manager

        return V2Manager.open(path, root)
    from dockyard.cgroups.v1 import V1Manager

    return V1Manager.open(path, root)


def manager_from_dict(d: dict[str, Any]) -> CgroupManager:
    """The manager saved in a container's state by ``to_dict``; reads nothing from the host."""
    from dockyard.cgroups.base import CgroupManager

    return CgroupManager.from_dict(d)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        # AttributeError also lets `from dockyard.cgroups import fs` import the submodule
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(__import__(module, fromlist=[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
