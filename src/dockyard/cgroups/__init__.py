"""cgroup v1 and v2 managers for the OCI runtime.

Modules: ``base`` (the CgroupManager interface), ``factory`` (new_manager: v1 or v2),
``v1``/``v2`` (the managers), ``resources`` (validating OCI linux.resources, v2 formulas),
``devices`` (device rules and the v1 devices-cgroup emulator), ``ebpf`` (the v2 device
filter), ``paths`` (cgroupsPath semantics, hierarchy discovery), ``stats`` (runc's events
shape), ``fs`` (control-file I/O).
"""

from dockyard.cgroups.base import CgroupManager, manager_from_dict
from dockyard.cgroups.factory import new_manager
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
