"""The cgroup layer stays cheap to import: dockyard-runtime runs it as `python3 -I -S` on every call.

Each check runs in a fresh interpreter started the way the runtime is (isolated, no site),
does what one runtime verb does, and lists the modules that must not have been loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import dockyard
from dockyard.cgroups import paths

SRC = os.path.dirname(os.path.dirname(dockyard.__file__))

# heavy standard-library modules and the cgroup modules only set/stats/device filters need
NEVER_ON_THE_HOT_PATH = {
    "typing", "dataclasses", "re", "enum", "signal", "shutil", "ctypes", "inspect",
    "dockyard.cgroups.resources", "dockyard.cgroups.devices", "dockyard.cgroups.ebpf", "dockyard.cgroups.stats",
}


def loaded_after(code: str, **names: object) -> set[str]:
    """The modules loaded in a fresh `python -I -S` once `code` has run; `names` become its globals.

    The child imports nothing of its own (json alone would load re): `names` travel as literals.
    """
    literals = "".join(f"{name} = {value!r}\n" for name, value in names.items())
    program = f"import sys\nsys.path.insert(0, {SRC!r})\n{literals}{code}\nprint(' '.join(sys.modules))\n"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def fake_v1_root(root: Path) -> Path:
    """A v1 layout whose container directory /dockyard/x already exists with its control files."""
    for name, files in {"cpu,cpuacct": {}, "cpuset": {"cpuset.cpus": "0", "cpuset.mems": "0"}, "memory": {},
                        "devices": {}, "freezer": {"freezer.state": "THAWED", "freezer.self_freezing": "0"},
                        "systemd": {}}.items():
        for level in ("", "dockyard", "dockyard/x"):
            (root / name / level).mkdir(parents=True, exist_ok=True)
            for file, content in files.items():
                (root / name / level / file).write_text(content)
    return root


def test_new_manager_on_this_v1_host_loads_neither_v2_nor_heavy_modules() -> None:
    if paths.is_unified():
        pytest.skip("this host is cgroup v2")
    if not os.path.isdir(os.path.join(paths.DEFAULT_ROOT, "memory")):
        pytest.skip("no cgroup v1 hierarchies are mounted")
    loaded = loaded_after('from dockyard.cgroups import new_manager, manager_from_dict\nnew_manager(None, "x")')
    assert "dockyard.cgroups.v1" in loaded
    assert loaded.isdisjoint(NEVER_ON_THE_HOT_PATH | {"dockyard.cgroups.v2"}), loaded & NEVER_ON_THE_HOT_PATH


def test_create_and_reload_on_v1_stay_on_the_hot_path(tmp_path: Path) -> None:
    root = fake_v1_root(tmp_path)
    loaded = loaded_after(
        "from dockyard.cgroups import new_manager, manager_from_dict\n"
        'm = new_manager(None, "x", root=root)\n'
        "m.create(); m.mounts()\n"
        "again = manager_from_dict(m.to_dict())\n"
        "assert not again.is_frozen()\n",
        root=str(root),
    )
    assert "dockyard.cgroups.v1" in loaded
    assert loaded.isdisjoint(NEVER_ON_THE_HOT_PATH | {"dockyard.cgroups.v2"}), loaded & NEVER_ON_THE_HOT_PATH


# what `set` must not load either: it runs on every create, always with device rules
NEVER_FOR_SET = {
    "typing", "dataclasses", "re", "enum", "inspect", "functools", "collections", "ast", "tokenize", "linecache",
    "copy", "signal", "shutil", "ctypes", "dockyard.cgroups.ebpf", "dockyard.cgroups.stats", "dockyard.cgroups.v2",
}
UNLIMITED = "9223372036854771712"
SET_FILES = {  # the control files the resources below write, in every level of the fake v1 tree
    "cpu,cpuacct": {"cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1"},
    "memory": {"memory.limit_in_bytes": UNLIMITED, "memory.memsw.limit_in_bytes": UNLIMITED,
               "memory.soft_limit_in_bytes": UNLIMITED},
    "pids": {"pids.max": "max"},
    "hugetlb": {"hugetlb.2MB.limit_in_bytes": "0"},
    # already what the rules ask for: a fake devices.list cannot follow the writes, and set() checks it
    "devices": {"devices.list": "c 1:3 rwm\nc 136:* rw\n", "devices.allow": "", "devices.deny": ""},
}
RESOURCES = {
    "memory": {"limit": 1 << 30, "swap": 2 << 30, "reservation": 1 << 29},
    "pids": {"limit": 64},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}],
    "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": True, "type": "c", "major": 136, "access": "rw"}],
}


def test_set_on_v1_loads_no_heavy_modules(tmp_path: Path) -> None:
    """create + set (memory, pids, cpu, cpuset, hugepages, devices): no dataclasses, re, typing, enum."""
    root = fake_v1_root(tmp_path)
    for name, files in SET_FILES.items():
        for level in ("", "dockyard", "dockyard/x"):
            (root / name / level).mkdir(parents=True, exist_ok=True)
            for file, content in files.items():
                (root / name / level / file).write_text(content)
    loaded = loaded_after(
        "from dockyard.cgroups import new_manager\n"
        'm = new_manager(None, "x", root=root)\n'
        "m.create()\n"
        "m.set(resources)\n",
        root=str(root),
        resources=RESOURCES,
    )
    assert {"dockyard.cgroups.v1", "dockyard.cgroups.resources", "dockyard.cgroups.devices"} <= loaded
    assert loaded.isdisjoint(NEVER_FOR_SET), loaded & NEVER_FOR_SET
    for hierarchy, name, value in (("memory", "memory.limit_in_bytes", str(1 << 30)), ("pids", "pids.max", "64"),
                                   ("cpu,cpuacct", "cpu.cfs_quota_us", "50000"),
                                   ("hugetlb", "hugetlb.2MB.limit_in_bytes", str(1 << 21))):
        assert (root / hierarchy / "dockyard" / "x" / name).read_text() == value


def test_v2_root_does_not_load_the_v1_manager(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "dockyard" / "x").mkdir(parents=True)
    (tmp_path / "dockyard" / "x" / "cgroup.freeze").write_text("0\n")
    loaded = loaded_after(
        "from dockyard.cgroups import new_manager, manager_from_dict\n"
        'm = new_manager(None, "x", root=root)\n'
        "assert not manager_from_dict(m.to_dict()).is_frozen()\n",
        root=str(tmp_path),
    )
    assert "dockyard.cgroups.v2" in loaded
    assert loaded.isdisjoint(NEVER_ON_THE_HOT_PATH | {"dockyard.cgroups.v1"}), loaded & NEVER_ON_THE_HOT_PATH


def test_saved_state_reloads_without_mountinfo_or_the_other_manager() -> None:
    state = {"version": 1, "path": "/dockyard/x", "hierarchies": [
        {"controllers": ["freezer"], "mountpoint": "/nonexistent/freezer", "root": "/", "dir": "/nonexistent/freezer/x"}]}
    loaded = loaded_after(
        "import builtins, os\n"
        "real_open = os.open\n"
        "def guarded(path, *args, **kwargs):\n"
        "    assert 'mountinfo' not in str(path), path\n"
        "    return real_open(path, *args, **kwargs)\n"
        "os.open = builtins.open = guarded\n"
        "from dockyard.cgroups import manager_from_dict\n"
        "assert manager_from_dict(state).mounts() == [('freezer', '/nonexistent/freezer/x')]\n",
        state=state,
    )
    assert "dockyard.cgroups.v1" in loaded
    assert loaded.isdisjoint(NEVER_ON_THE_HOT_PATH | {"dockyard.cgroups.v2"})


def test_public_names_still_import_lazily() -> None:
    loaded = loaded_after(
        "from dockyard.cgroups import (CgroupManager, Resources, V1Manager, V2Manager, current_cgroup_paths,\n"
        "                              manager_from_dict, new_manager, parse_resources)\n"
        "import dockyard.cgroups as cg\n"
        "assert issubclass(V1Manager, CgroupManager) and issubclass(V2Manager, CgroupManager)\n"
        "assert cg.V1Manager is V1Manager and callable(parse_resources) and callable(current_cgroup_paths)\n"
        "assert set(cg.__all__) <= set(dir(cg))\n"
        "try:\n"
        "    cg.no_such_name\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('missing names must raise AttributeError')\n"
    )
    assert {"dockyard.cgroups.v1", "dockyard.cgroups.v2", "dockyard.cgroups.resources"} <= loaded
