"""The v1 manager against a fake hierarchy tree: write plans, ordering, validation, reading."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dockyard.cgroups import V1Manager, fs, new_manager, v1
from dockyard.errors import InvalidSpec, NotImplementedFeature, SystemFailure

UNLIMITED = "9223372036854771712"
INNER = "/dockyard/c1"

# the files of each fake hierarchy, at every level of the tree
FILES: dict[str, dict[str, str]] = {
    "cpu,cpuacct": {
        "cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1", "cpu.cfs_burst_us": "0",
        "cpu.idle": "0", "cpu.rt_period_us": "1000000", "cpu.rt_runtime_us": "0",
        "cpu.stat": "nr_periods 10\nnr_throttled 3\nthrottled_time 5000\n",
        "cpuacct.usage": "3000000000", "cpuacct.usage_percpu": "1000000000 2000000000 \n",
        "cpuacct.stat": "user 150\nsystem 50\n",
        "cpuacct.usage_all": "cpu user system\n0 700 300\n1 1400 600\n",
    },
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpu_exclusive": "0", "cpuset.sched_load_balance": "1"},
    "memory": {
        "memory.limit_in_bytes": UNLIMITED, "memory.memsw.limit_in_bytes": UNLIMITED,
        "memory.soft_limit_in_bytes": UNLIMITED, "memory.swappiness": "60", "memory.use_hierarchy": "1",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        "memory.usage_in_bytes": "5000000", "memory.max_usage_in_bytes": "6000000", "memory.failcnt": "1",
        "memory.memsw.usage_in_bytes": "5500000", "memory.memsw.max_usage_in_bytes": "6500000",
        "memory.memsw.failcnt": "0",
        "memory.kmem.usage_in_bytes": "100", "memory.kmem.max_usage_in_bytes": "200", "memory.kmem.failcnt": "0",
        "memory.stat": "cache 4096\nrss 8192\n",
    },
    "pids": {"pids.max": "max", "pids.current": "3"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
    "freezer": {"freezer.state": "THAWED", "freezer.self_freezing": "0"},
    "blkio": {
        "blkio.bfq.weight": "100", "blkio.bfq.weight_device": "", "blkio.throttle.read_bps_device": "",
        "blkio.throttle.write_bps_device": "", "blkio.throttle.read_iops_device": "",
        "blkio.throttle.write_iops_device": "",
        "blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\nTotal 12288\n",
        "blkio.throttle.io_serviced_recursive": "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
    },
    "systemd": {},
}
ROOT_OVERRIDES = {"cpuset": {"cpuset.cpus": "0-3", "cpuset.mems": "0"}}


def make_tree(root: Path, inner: str = INNER, skip: tuple[str, ...] = ()) -> None:
    levels = [""] + [inner.strip("/").split("/")[0]] + [inner.strip("/")]
    for hierarchy, files in FILES.items():
        if hierarchy in skip:
            continue
        for level in levels:
            d = root / hierarchy / level
            d.mkdir(parents=True, exist_ok=True)
            for name, content in {**files, "cgroup.procs": "", **(ROOT_OVERRIDES.get(hierarchy, {}) if not level else {})}.items():
                (d / name).write_text(content)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    make_tree(tmp_path)
    return tmp_path


@pytest.fixture
def manager(tree: Path) -> V1Manager:
    m = new_manager(INNER, "c1", root=str(tree))
    assert isinstance(m, V1Manager)
    return m


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every control-file write, in order, as (file name, value)."""
    log: list[tuple[str, str]] = []
    real = fs.write

    def record(directory: str, name: str, value: str) -> None:
        log.append((name, value))
        real(directory, name, value)

    monkeypatch.setattr(fs, "write", record)
    return log


def read(tree: Path, hierarchy: str, name: str, inner: str = INNER) -> str:
    return (tree / hierarchy / inner.strip("/") / name).read_text()


def snapshot(root: Path) -> dict[str, str]:
    return {str(p): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_create_fills_empty_cpusets_from_the_parent_at_every_level(tmp_path: Path) -> None:
    make_tree(tmp_path)
    (tmp_path / "cpuset" / "dockyard" / "cpuset.mems").write_text("0\n")  # already set: kept
    (tmp_path / "cpuset" / "dockyard" / "cpuset.cpus").write_text("")
    m = new_manager(INNER, "c1", root=str(tmp_path))
    m.create()
    assert (tmp_path / "cpuset" / "dockyard" / "cpuset.cpus").read_text() == "0-3"
    assert read(tmp_path, "cpuset", "cpuset.cpus") == "0-3"
    assert read(tmp_path, "cpuset", "cpuset.mems") == "0"
    m.create()  # idempotent


def test_set_writes_each_controller(manager: V1Manager, tree: Path) -> None:
    manager.set({
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20, "swappiness": 0,
                   "disableOOMKiller": True, "kernel": 1, "kernelTCP": 1},
        "cpu": {"shares": 512, "quota": 20000, "period": 50000, "burst": 1000, "idle": 0,
                "realtimeRuntime": 900, "realtimePeriod": 1000000, "cpus": "1", "mems": "0"},
        "pids": {"limit": 32},
        "blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 400}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}]},
    })
    assert read(tree, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert read(tree, "memory", "memory.memsw.limit_in_bytes") == str(128 << 20)
    assert read(tree, "memory", "memory.soft_limit_in_bytes") == str(32 << 20)
    assert read(tree, "memory", "memory.swappiness") == "0"
    assert read(tree, "memory", "memory.oom_control") == "1"
    assert read(tree, "cpu,cpuacct", "cpu.shares") == "512"
    assert read(tree, "cpu,cpuacct", "cpu.cfs_quota_us") == "20000"
    assert read(tree, "cpu,cpuacct", "cpu.cfs_period_us") == "50000"
    assert read(tree, "cpu,cpuacct", "cpu.cfs_burst_us") == "1000"
    assert read(tree, "cpu,cpuacct", "cpu.rt_runtime_us") == "900"
    assert read(tree, "cpuset", "cpuset.cpus") == "1"
    assert read(tree, "pids", "pids.max") == "32"
    assert read(tree, "blkio", "blkio.bfq.weight") == "300"
    assert read(tree, "blkio", "blkio.bfq.weight_device") == "8:0 400"
    assert read(tree, "blkio", "blkio.throttle.read_bps_device") == "8:0 1000"


def test_unset_fields_are_left_alone(manager: V1Manager, tree: Path, writes: list[tuple[str, str]]) -> None:
    manager.set({"memory": {}, "cpu": {"shares": 0}, "blockIO": {}})
    assert writes == []
    manager.set({"pids": {"limit": -1}})
    assert writes == [("pids.max", "max")]


def test_raising_memory_writes_swap_first(manager: V1Manager, tree: Path, writes: list[tuple[str, str]]) -> None:
    (tree / "memory" / INNER.strip("/") / "memory.limit_in_bytes").write_text(str(64 << 20))
    manager.set({"memory": {"limit": 256 << 20, "swap": 512 << 20}})
    assert writes == [("memory.memsw.limit_in_bytes", str(512 << 20)), ("memory.limit_in_bytes", str(256 << 20))]


def test_lowering_memory_writes_memory_first(manager: V1Manager, tree: Path, writes: list[tuple[str, str]]) -> None:
    (tree / "memory" / INNER.strip("/") / "memory.limit_in_bytes").write_text(str(512 << 20))
    manager.set({"memory": {"limit": 64 << 20, "swap": 128 << 20}})
    assert writes == [("memory.limit_in_bytes", str(64 << 20)), ("memory.memsw.limit_in_bytes", str(128 << 20))]


def test_unlimited_memory_unlimits_swap_too(manager: V1Manager, writes: list[tuple[str, str]]) -> None:
    manager.set({"memory": {"limit": -1}})
    assert writes == [("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", "-1")]


@pytest.mark.parametrize(
    "resources, error",
    [
        ({"memory": {"limit": 100 << 20, "swap": 50 << 20}, "pids": {"limit": 5}}, InvalidSpec),
        ({"memory": {"limit": -1, "swap": 50 << 20}}, InvalidSpec),
        ({"pids": {"limit": 5}, "unified": {"memory.max": "1"}}, InvalidSpec),
        ({"pids": {"limit": 5}, "hugepageLimits": [{"pageSize": "2MB", "limit": 0}]}, SystemFailure),
        ({"pids": {"limit": 5}, "network": {"classID": 1}}, SystemFailure),
        ({"pids": {"limit": 5}, "blockIO": {"leafWeight": 100}}, SystemFailure),
        ({"pids": {"limit": 5}, "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "access": "m"},
                                            {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "m"}]},
         InvalidSpec),
        ({"pids": {"limit": 5}, "rdma": {"x": {}}}, NotImplementedFeature),
    ],
)
def test_invalid_or_impossible_input_writes_nothing(
    manager: V1Manager, tree: Path, resources: dict[str, Any], error: type[Exception]
) -> None:
    before = snapshot(tree)
    with pytest.raises(error):
        manager.set(resources)
    assert snapshot(tree) == before


def test_missing_controller_is_named(tmp_path: Path) -> None:
    make_tree(tmp_path, skip=("pids",))
    m = new_manager(INNER, "c1", root=str(tmp_path))
    with pytest.raises(SystemFailure, match="pids.limit needs the pids cgroup controller"):
        m.set({"pids": {"limit": 5}})


def test_swap_without_swap_accounting_is_refused(manager: V1Manager, tree: Path) -> None:
    (tree / "memory" / INNER.strip("/") / "memory.memsw.limit_in_bytes").unlink()
    with pytest.raises(SystemFailure, match="no swap accounting"):
        manager.set({"memory": {"limit": 64 << 20, "swap": 128 << 20}})
    manager.set({"memory": {"limit": -1}})  # no swap to unlimit: fine


def test_period_refused_until_quota_is_retried_after_it(
    manager: V1Manager, writes: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    recording = fs.write
    refused: list[str] = []

    def kernel(directory: str, name: str, value: str) -> None:
        if name == "cpu.cfs_period_us" and not refused:
            refused.append(value)
            raise SystemFailure("EINVAL", errno.EINVAL)
        recording(directory, name, value)

    monkeypatch.setattr(fs, "write", kernel)
    manager.set({"cpu": {"quota": 5000, "period": 10000}})
    assert writes == [("cpu.cfs_quota_us", "5000"), ("cpu.cfs_period_us", "10000")]


def test_einval_without_a_partner_write_fails(manager: V1Manager, monkeypatch: pytest.MonkeyPatch) -> None:
    def kernel(directory: str, name: str, value: str) -> None:
        raise SystemFailure(f"writing {value!r} to {directory}/{name}: Invalid argument", errno.EINVAL)

    monkeypatch.setattr(fs, "write", kernel)
    with pytest.raises(SystemFailure, match="cpu.cfs_period_us"):
        manager.set({"cpu": {"period": 10000}})


def test_memory_below_usage_names_file_value_and_usage(manager: V1Manager, monkeypatch: pytest.MonkeyPatch) -> None:
    real = fs.write

    def kernel(directory: str, name: str, value: str) -> None:
        if name == "memory.limit_in_bytes":
            raise SystemFailure(f"writing {value!r} to {directory}/{name}: Device or resource busy", errno.EBUSY)
        real(directory, name, value)

    monkeypatch.setattr(fs, "write", kernel)
    with pytest.raises(SystemFailure) as info:
        manager.set({"memory": {"limit": 1 << 20}})
    assert info.value.errno == errno.EBUSY
    assert "memory.limit_in_bytes" in str(info.value) and "1048576" in str(info.value)
    assert "current usage 5000000" in str(info.value)


def test_check_before_update_refuses_a_limit_below_usage(manager: V1Manager, tree: Path) -> None:
    before = snapshot(tree)
    with pytest.raises(SystemFailure, match="current usage is 5000000"):
        manager.set({"memory": {"limit": 4000000, "checkBeforeUpdate": True}})
    assert snapshot(tree) == before


def test_device_plan_is_the_emulator_transition(manager: V1Manager) -> None:
    res = {"devices": [{"allow": False, "access": "rwm"},
                       {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                       {"allow": True, "type": "c", "major": 136, "access": "rwm"}]}
    from dockyard.cgroups import parse_resources

    plan = manager.plan(parse_resources(res))
    assert [(w.name, w.value) for w in plan] == [
        ("devices.deny", "a *:* rwm"), ("devices.allow", "c 1:3 rwm"), ("devices.allow", "c 136:* rwm"),
    ]


def test_devices_are_checked_against_the_kernel_afterwards(manager: V1Manager) -> None:
    # the fake devices.list does not change, like a kernel that ignored the writes
    with pytest.raises(SystemFailure, match="does not match"):
        manager.set({"devices": [{"allow": False, "access": "rwm"}]})


def test_stats_from_v1_files(manager: V1Manager) -> None:
    s = manager.stats()
    hz = os.sysconf("SC_CLK_TCK")
    assert s["cpu"]["usage"] == {
        "total": 3000000000, "percpu": [1000000000, 2000000000], "percpu_kernel": [300, 600],
        "percpu_user": [700, 1400], "kernel": 50 * 10**9 // hz, "user": 150 * 10**9 // hz,
    }
    assert s["cpu"]["throttling"] == {"periods": 10, "throttledPeriods": 3, "throttledTime": 5000}
    assert s["memory"]["usage"] == {"usage": 5000000, "max": 6000000, "limit": int(UNLIMITED), "failcnt": 1}
    assert s["memory"]["swap"]["usage"] == 5500000
    assert s["memory"]["kernel"] == {"usage": 100, "max": 200, "limit": 0, "failcnt": 0}
    assert s["memory"]["cache"] == 4096 and s["memory"]["raw"]["rss"] == 8192
    assert s["pids"] == {"current": 3, "limit": 0}
    assert s["blkio"]["ioServiceBytesRecursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 4096}, {"major": 8, "minor": 0, "op": "Write", "value": 8192},
    ]
    assert s["cpuset"]["cpu_exclusive"] == 0 and s["cpuset"]["sched_load_balance"] == 1
    assert s["hugetlb"] == {}


def test_oom_kill_count_from_oom_control(manager: V1Manager) -> None:
    assert manager.oom_kill_count() == 2


def test_freeze_thaw_and_state(manager: V1Manager, tree: Path) -> None:
    assert not manager.is_frozen()
    manager.freeze()
    assert read(tree, "freezer", "freezer.state") == "FROZEN"
    (tree / "freezer" / INNER.strip("/") / "freezer.self_freezing").write_text("1\n")
    assert manager.is_frozen()
    (tree / "freezer" / INNER.strip("/") / "freezer.self_freezing").write_text("0\n")
    assert not manager.is_frozen()  # frozen only through a parent
    manager.thaw()
    assert read(tree, "freezer", "freezer.state") == "THAWED"


def test_without_a_freezer_freeze_is_not_implemented(tmp_path: Path) -> None:
    make_tree(tmp_path, skip=("freezer",))
    m = new_manager(INNER, "c1", root=str(tmp_path))
    assert not m.is_frozen()
    with pytest.raises(NotImplementedFeature, match="freezer"):
        m.freeze()


def test_pids_include_sub_cgroups(manager: V1Manager, tree: Path) -> None:
    top = tree / "devices" / INNER.strip("/")
    (top / "cgroup.procs").write_text("10\n11\n")
    (top / "sub").mkdir()
    (top / "sub" / "cgroup.procs").write_text("12\n")
    assert sorted(manager.pids()) == [10, 11, 12]


def test_destroy_of_missing_directories_is_fine(tmp_path: Path) -> None:
    for name in FILES:
        (tmp_path / name).mkdir()
    m = new_manager(INNER, "c1", root=str(tmp_path))
    m.destroy()
    m.destroy()


def test_add_process_of_a_missing_pid_is_not_found(manager: V1Manager, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockyard.errors import NotFound

    def kernel(directory: str, name: str, value: str) -> None:
        raise SystemFailure("No such process", errno.ESRCH)

    monkeypatch.setattr(fs, "write", kernel)
    with pytest.raises(NotFound, match="process 99999"):
        manager.add_process(99999)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file read through fs, in order, as a path."""
    log: list[str] = []
    real = fs.read_bytes

    def record(path: str) -> bytes:
        log.append(path)
        return real(path)

    monkeypatch.setattr(fs, "read_bytes", record)
    return log


def test_is_frozen_reads_one_file(manager: V1Manager, tree: Path, reads: list[str]) -> None:
    assert not manager.is_frozen()
    (tree / "freezer" / INNER.strip("/") / "freezer.state").write_text("FROZEN\n")
    (tree / "freezer" / INNER.strip("/") / "freezer.self_freezing").write_text("1\n")
    assert manager.is_frozen()
    assert [os.path.basename(p) for p in reads] == ["freezer.self_freezing"] * 2


def test_is_frozen_without_self_freezing_reads_the_state(manager: V1Manager, tree: Path) -> None:
    (tree / "freezer" / INNER.strip("/") / "freezer.self_freezing").unlink()  # kernels before 3.10
    assert not manager.is_frozen()
    (tree / "freezer" / INNER.strip("/") / "freezer.state").write_text("FROZEN\n")
    assert manager.is_frozen()


def test_create_reads_no_file_twice(tmp_path: Path, reads: list[str]) -> None:
    make_tree(tmp_path)
    new_manager(INNER, "c1", root=str(tmp_path)).create()
    assert reads and len(reads) == len(set(reads))
    assert all("cpuset" in os.path.basename(p) for p in reads)


def test_create_and_destroy_of_new_directories_never_sleep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FILES:
        if name != "cpuset":  # a fake cpuset directory would lack the files the kernel makes
            (tmp_path / name).mkdir()
    m = new_manager("/a/b/c", "c", root=str(tmp_path))

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds}s")

    # fs's and v1's own view of time only: other threads (the suite's reaper) keep sleeping
    for module in (fs, v1):
        monkeypatch.setattr(module, "time", SimpleNamespace(sleep=no_sleep, monotonic=time.monotonic))
    m.create()
    dirs = [d for _, d in m.mounts()]
    assert all(os.path.isdir(d) for d in dirs)
    m.destroy()
    assert not any(os.path.exists(d) for d in dirs)
