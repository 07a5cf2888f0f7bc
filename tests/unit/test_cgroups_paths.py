"""cgroupsPath semantics, hierarchy discovery and manager persistence, on fake trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.cgroups import V1Manager, V2Manager, current_cgroup_paths, manager_from_dict, new_manager, paths
from dockyard.cgroups.paths import Hierarchy
from dockyard.errors import InvalidArgument, InvalidSpec, NotImplementedFeature, SystemFailure

MOUNTINFO = """\
22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw
31 22 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 22 0:32 / /mnt/again\\040memory rw,relatime - cgroup cgroup rw,memory
51 31 0:32 / /sys/fs/cgroup/memory2 rw,relatime - cgroup cgroup rw,memory
"""


@pytest.mark.parametrize(
    "given, expected",
    [
        ("/docker/abc", "/docker/abc"),
        ("/a/./b//c/", "/a/b/c"),
        ("//a", "/a"),
        ("/../../x", "/x"),
        ("rel/x", "rel/x"),
        ("../../rel", "rel"),
        ("a/../../b", "b"),
    ],
)
def test_clean_path_is_runcs(given: str, expected: str) -> None:
    assert paths.clean_path(given) == expected


def test_default_path_is_under_dockyard() -> None:
    assert paths.normalise(None, "abc") == "/dockyard/abc"
    assert paths.normalise("", "abc") == "/dockyard/abc"


@pytest.mark.parametrize("bad_id", ["", "a/b", "..", "."])
def test_default_path_needs_a_plain_id(bad_id: str) -> None:
    with pytest.raises(InvalidArgument):
        paths.normalise(None, bad_id)


@pytest.mark.parametrize("root_path", ["/", "//", "/..", ".", "a/..", "../"])
def test_path_at_the_hierarchy_root_is_refused(root_path: str) -> None:
    with pytest.raises(InvalidSpec, match="root of the hierarchy"):
        paths.normalise(root_path, "abc")


def test_parse_proc_cgroup_splits_comounted_controllers() -> None:
    text = "12:cpu,cpuacct:/docker/x\n1:name=systemd:/init.scope\n0::/user.slice\n"
    assert paths.parse_proc_cgroup(text) == {
        "cpu": "/docker/x",
        "cpuacct": "/docker/x",
        "name=systemd": "/init.scope",
        "": "/user.slice",
    }


def test_current_cgroup_paths_reads_proc() -> None:
    mine = current_cgroup_paths()
    assert mine and all(p.startswith("/") for p in mine.values())
    with pytest.raises(SystemFailure):
        current_cgroup_paths(2**22 + 12345)


def test_parse_mountinfo_finds_hierarchies_under_root() -> None:
    found = paths.parse_mountinfo(MOUNTINFO, "/sys/fs/cgroup")
    assert found == [
        Hierarchy(("cpu", "cpuacct"), "/sys/fs/cgroup/cpu,cpuacct"),
        Hierarchy(("cpuset",), "/sys/fs/cgroup/cpuset"),
        Hierarchy(("memory",), "/sys/fs/cgroup/memory", "/docker/abc"),
        Hierarchy(("name=systemd",), "/sys/fs/cgroup/systemd"),
        Hierarchy((), "/sys/fs/cgroup/unified"),
    ]  # the second memory mount is skipped: first mount wins
    assert [h.name for h in found] == ["cpu,cpuacct", "cpuset", "memory", "systemd", "unified"]


def test_parse_mountinfo_unescapes_mount_points() -> None:
    found = paths.parse_mountinfo(MOUNTINFO, "/mnt")
    assert found == [Hierarchy(("memory",), "/mnt/again memory")]


def test_absolute_path_goes_below_each_mount() -> None:
    h = Hierarchy(("cpu", "cpuacct"), "/sys/fs/cgroup/cpu,cpuacct")
    assert paths.v1_dir(h, "/docker/x", {}) == "/sys/fs/cgroup/cpu,cpuacct/docker/x"
    assert paths.v2_dir("/sys/fs/cgroup", "/docker/x", {}) == "/sys/fs/cgroup/docker/x"


def test_relative_path_goes_below_our_own_cgroup_v1() -> None:
    own = {"cpu": "/user.slice/session-1", "cpuacct": "/user.slice/session-1", "memory": "/docker/abc/inner"}
    cpu = Hierarchy(("cpu", "cpuacct"), "/sys/fs/cgroup/cpu,cpuacct")
    assert paths.v1_dir(cpu, "mine/x", own) == "/sys/fs/cgroup/cpu,cpuacct/user.slice/session-1/mine/x"
    # nested: the mount shows /docker/abc of the hierarchy, our cgroup is inside it
    memory = Hierarchy(("memory",), "/sys/fs/cgroup/memory", "/docker/abc")
    assert paths.v1_dir(memory, "mine/x", own) == "/sys/fs/cgroup/memory/inner/mine/x"


def test_relative_path_goes_beside_our_own_cgroup_v2() -> None:
    own = {"": "/user.slice/user-0.slice/session-1.scope"}
    assert paths.v2_dir("/sys/fs/cgroup", "mine/x", own) == "/sys/fs/cgroup/user.slice/user-0.slice/mine/x"


def test_relative_path_outside_the_mount_is_refused() -> None:
    memory = Hierarchy(("memory",), "/sys/fs/cgroup/memory", "/docker/abc")
    with pytest.raises(SystemFailure, match="outside"):
        paths.v1_dir(memory, "x", {"memory": "/elsewhere"})


def _fake_v1_root(tmp_path: Path) -> Path:
    for name in ("cpu,cpuacct", "memory", "systemd", "freezer", "devices"):
        (tmp_path / name).mkdir()
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    return tmp_path


def test_new_manager_reads_a_fake_v1_layout(tmp_path: Path) -> None:
    root = _fake_v1_root(tmp_path)
    m = new_manager("/docker/c1", "c1", root=str(root))
    assert isinstance(m, V1Manager) and m.version == 1 and m.path == "/docker/c1"
    assert m.dir("cpuacct") == m.dir("cpu") == f"{root}/cpu,cpuacct/docker/c1"
    assert m.dir("name=systemd") == f"{root}/systemd/docker/c1"
    assert dict(m.mounts()) == {
        "cpu,cpuacct": f"{root}/cpu,cpuacct/docker/c1",
        "memory": f"{root}/memory/docker/c1",
        "systemd": f"{root}/systemd/docker/c1",
        "freezer": f"{root}/freezer/docker/c1",
        "devices": f"{root}/devices/docker/c1",
        "unified": f"{root}/unified/docker/c1",
    }


def test_new_manager_reads_a_fake_v2_root(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    m = new_manager(None, "c2", root=str(tmp_path))
    assert isinstance(m, V2Manager) and m.version == 2
    assert m.mounts() == [("", f"{tmp_path}/dockyard/c2")]


def test_no_hierarchies_is_a_clear_failure(tmp_path: Path) -> None:
    with pytest.raises(SystemFailure, match="no cgroup v1 hierarchies"):
        new_manager("/x", "x", root=str(tmp_path))


def test_systemd_driver_is_not_implemented(tmp_path: Path) -> None:
    with pytest.raises(NotImplementedFeature, match="systemd cgroup driver"):
        new_manager("system.slice:docker:x", "x", systemd=True, root=str(tmp_path))


def test_state_round_trips_to_the_same_directories(tmp_path: Path) -> None:
    root = _fake_v1_root(tmp_path)
    m1 = new_manager("/docker/c1", "c1", root=str(root))
    again = manager_from_dict(m1.to_dict())
    assert isinstance(again, V1Manager)
    assert again.to_dict() == m1.to_dict() and again.mounts() == m1.mounts() and again.path == m1.path
    v2root = tmp_path / "v2"
    v2root.mkdir()
    (v2root / "cgroup.controllers").write_text("")
    m2 = new_manager("rel/c2", "c2", root=str(v2root))
    assert V2Manager.from_dict(m2.to_dict()).mounts() == m2.mounts()


def test_relative_state_does_not_depend_on_the_loader(tmp_path: Path) -> None:
    """A later `delete` may run in another cgroup: the saved directories are used as they are."""
    root = _fake_v1_root(tmp_path)
    m = V1Manager.open("rel/x", str(root), own={"cpu": "/a", "cpuacct": "/a", "memory": "/b", "name=systemd": "/",
                                                 "freezer": "/", "devices": "/", "": "/c/d"})
    assert m.dir("memory") == f"{root}/memory/b/rel/x"
    assert manager_from_dict(m.to_dict()).mounts() == m.mounts()


@pytest.mark.parametrize("bad", [{}, {"version": 3}, {"version": 1}, {"version": 2, "path": "/x"}, {"version": "1"}])
def test_malformed_state_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        manager_from_dict(bad)


def test_from_dict_on_the_wrong_class_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("")
    state = new_manager("/x", "x", root=str(tmp_path)).to_dict()
    with pytest.raises(InvalidArgument, match="version 2"):
        V1Manager.from_dict(state)


def test_mountinfo_is_read_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockyard.cgroups import fs

    root = _fake_v1_root(tmp_path)
    read: list[str] = []
    real = fs.read_bytes

    def record(path: str) -> bytes:
        read.append(path)
        return real(path)

    monkeypatch.setattr(fs, "read_bytes", record)
    paths.forget_mounts()
    m = new_manager("/docker/c1", "c1", root=str(root))
    new_manager("/docker/c2", "c2", root=str(root))
    paths.discover_v1()
    assert read.count("/proc/self/mountinfo") == 1
    manager_from_dict(m.to_dict())  # the saved state carries the directories
    assert read.count("/proc/self/mountinfo") == 1
    paths.forget_mounts()
    new_manager("/docker/c1", "c1", root=str(root))
    assert read.count("/proc/self/mountinfo") == 2


def test_hierarchy_is_an_immutable_value() -> None:
    h = Hierarchy(("cpu", "cpuacct"), "/sys/fs/cgroup/cpu,cpuacct")
    assert h == Hierarchy(("cpu", "cpuacct"), "/sys/fs/cgroup/cpu,cpuacct", "/") and h.root == "/"
    assert h != Hierarchy(("cpu", "cpuacct"), "/sys/fs/cgroup/cpu,cpuacct", "/docker")
    assert len({h, Hierarchy(("cpu", "cpuacct"), "/sys/fs/cgroup/cpu,cpuacct")}) == 1
    with pytest.raises(AttributeError):
        h.root = "/x"  # type: ignore[misc]
