"""The v2 manager's translation of OCI resources, against a fake unified tree."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dockyard.cgroups import V2Manager, ebpf, fs, new_manager, v2
from dockyard.errors import InvalidSpec, NotImplementedFeature, SystemFailure

INNER = "/dockyard/c1"
CONTROLLERS = "cpuset cpu io memory hugetlb pids"
LEAF_FILES = {
    "cgroup.procs": "", "cgroup.freeze": "0", "cgroup.events": "populated 1\nfrozen 0\n", "cgroup.kill": "",
    "cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0", "cpu.idle": "0",
    "cpu.stat": "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_periods 7\nnr_throttled 2\nthrottled_usec 40\n",
    "cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpus.effective": "0-1", "cpuset.mems.effective": "0",
    "memory.max": "max", "memory.swap.max": "max", "memory.low": "0", "memory.current": "5000000",
    "memory.peak": "6000000", "memory.swap.current": "1000", "memory.stat": "anon 8192\nfile 4096\n",
    "memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
    "pids.max": "max", "pids.current": "2", "io.weight": "default 100", "io.max": "",
    "io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
    "hugetlb.2MB.max": "max", "memory.high": "max", "memory.oom.group": "0",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "cgroup.controllers").write_text(CONTROLLERS + "\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    mid = tmp_path / "dockyard"
    leaf = mid / "c1"
    leaf.mkdir(parents=True)
    (mid / "cgroup.controllers").write_text(CONTROLLERS + "\n")
    (mid / "cgroup.subtree_control").write_text("cpu memory\n")
    (leaf / "cgroup.controllers").write_text(CONTROLLERS + "\n")
    (leaf / "cgroup.subtree_control").write_text("")
    for name, content in LEAF_FILES.items():
        (leaf / name).write_text(content)
    return tmp_path


@pytest.fixture
def manager(tree: Path) -> V2Manager:
    m = new_manager(INNER, "c1", root=str(tree))
    assert isinstance(m, V2Manager)
    return m


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    log: list[tuple[str, str, str]] = []
    real = fs.write

    def record(directory: str, name: str, value: str) -> None:
        log.append((directory, name, value))
        real(directory, name, value)

    monkeypatch.setattr(fs, "write", record)
    return log


def leaf_writes(log: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for d, name, value in log if d.endswith(INNER)]


def snapshot(root: Path) -> dict[str, str]:
    return {str(p): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_create_enables_controllers_in_each_parent(manager: V2Manager, tree: Path,
                                                   writes: list[tuple[str, str, str]]) -> None:
    manager.create()
    assert writes == [
        (str(tree), "cgroup.subtree_control", "+cpuset +cpu +io +memory +hugetlb +pids"),
        (str(tree / "dockyard"), "cgroup.subtree_control", "+cpuset +io +hugetlb +pids"),
    ]


def test_create_falls_back_to_one_controller_at_a_time(manager: V2Manager, tree: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []

    def kernel(directory: str, name: str, value: str) -> None:
        tried.append(value)
        if " " in value or value == "+io":
            raise SystemFailure("EBUSY")

    monkeypatch.setattr(fs, "write", kernel)
    (tree / "dockyard" / "cgroup.subtree_control").write_text(CONTROLLERS)
    manager.create()
    assert tried == ["+cpuset +cpu +io +memory +hugetlb +pids", "+cpuset", "+cpu", "+io", "+memory", "+hugetlb", "+pids"]


def test_translation_of_every_supported_setting(manager: V2Manager, writes: list[tuple[str, str, str]]) -> None:
    manager.set({
        "memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20, "disableOOMKiller": False,
                   "useHierarchy": True},
        "cpu": {"shares": 1024, "quota": 20000, "period": 50000, "burst": 1000, "idle": 1, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 16},
        "blockIO": {"weight": 1000, "weightDevice": [{"major": 8, "minor": 0, "weight": 10}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 0}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
        "unified": {"memory.high": "100000000", "memory.oom.group": "1"},
    })
    assert leaf_writes(writes) == [
        ("memory.swap.max", str(32 << 20)),
        ("memory.max", str(64 << 20)),
        ("memory.low", str(32 << 20)),
        ("cpu.idle", "1"),
        ("cpu.weight", "100"),
        ("cpu.max.burst", "1000"),
        ("cpu.max", "20000 50000"),
        ("cpuset.cpus", "0-1"),
        ("cpuset.mems", "0"),
        ("pids.max", "16"),
        ("io.weight", "10000"),
        ("io.weight", "8:0 1"),
        ("io.max", "8:0 rbps=1000"),
        ("io.max", "8:16 wiops=max"),
        ("hugetlb.2MB.max", str(4 << 20)),
        ("memory.high", "100000000"),
        ("memory.oom.group", "1"),
    ]


def test_unlimited_values_are_max(manager: V2Manager, writes: list[tuple[str, str, str]]) -> None:
    manager.set({"memory": {"limit": -1}, "cpu": {"quota": -1}, "pids": {"limit": -1}})
    assert leaf_writes(writes) == [
        ("memory.swap.max", "max"), ("memory.max", "max"), ("cpu.max", "max 100000"), ("pids.max", "max"),
    ]


def test_period_only_keeps_the_quota(manager: V2Manager, tree: Path, writes: list[tuple[str, str, str]]) -> None:
    (tree / "dockyard" / "c1" / "cpu.max").write_text("30000 100000\n")
    manager.set({"cpu": {"period": 50000}})
    assert leaf_writes(writes) == [("cpu.max", "30000 50000")]


def test_bfq_takes_the_v1_weight_unconverted(manager: V2Manager, tree: Path, writes: list[tuple[str, str, str]]) -> None:
    (tree / "dockyard" / "c1" / "io.bfq.weight").write_text("default 100\n")
    manager.set({"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 200}]}})
    assert leaf_writes(writes) == [("io.bfq.weight", "500"), ("io.bfq.weight", "8:0 200")]


def test_swap_accounting_missing_is_fine_for_max_only(manager: V2Manager, tree: Path,
                                                      writes: list[tuple[str, str, str]]) -> None:
    (tree / "dockyard" / "c1" / "memory.swap.max").unlink()
    manager.set({"memory": {"limit": 1 << 20, "swap": 1 << 20}})
    assert leaf_writes(writes) == [("memory.max", str(1 << 20))]
    with pytest.raises(SystemFailure, match="memory.swap"):
        manager.set({"memory": {"limit": 1 << 20, "swap": 2 << 20}})


@pytest.mark.parametrize(
    "resources, error, message",
    [
        ({"pids": {"limit": 4}, "memory": {"swap": 1 << 20}}, InvalidSpec, "needs memory.limit"),
        ({"pids": {"limit": 4}, "memory": {"swappiness": 10}}, NotImplementedFeature, "swappiness"),
        ({"pids": {"limit": 4}, "memory": {"disableOOMKiller": True}}, NotImplementedFeature, "disableOOMKiller"),
        ({"pids": {"limit": 4}, "memory": {"useHierarchy": False}}, NotImplementedFeature, "useHierarchy"),
        ({"pids": {"limit": 4}, "cpu": {"realtimeRuntime": 100}}, NotImplementedFeature, "realtime"),
        ({"pids": {"limit": 4}, "blockIO": {"leafWeight": 100}}, NotImplementedFeature, "leaf"),
        ({"pids": {"limit": 4}, "network": {"classID": 7}}, NotImplementedFeature, "net_cls"),
        ({"pids": {"limit": 4}, "hugepageLimits": [{"pageSize": "1GB", "limit": 0}]}, SystemFailure, "hugetlb.1GB.max"),
        ({"pids": {"limit": 4}, "unified": {"misc.max": "x 1"}}, SystemFailure, "misc.max"),
        ({"pids": {"limit": 4}, "devices": [{"allow": "yes", "access": "r"}]}, InvalidSpec, "allow"),
    ],
)
def test_what_v2_cannot_do_is_refused_before_any_write(
    manager: V2Manager, tree: Path, resources: dict[str, Any], error: type[Exception], message: str
) -> None:
    before = snapshot(tree)
    with pytest.raises(error, match=message):
        manager.set(resources)
    assert snapshot(tree) == before


def test_device_rules_become_an_attached_program(manager: V2Manager, monkeypatch: pytest.MonkeyPatch) -> None:
    attached: list[tuple[str, bytes]] = []
    monkeypatch.setattr(ebpf, "attach", lambda directory, program: attached.append((directory, program)))
    rules = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
    manager.set({"devices": rules})
    from dockyard.cgroups.devices import Emulator, parse_rules

    assert attached == [(manager.dir, ebpf.assemble(Emulator.from_rules(parse_rules(rules))))]


def test_freeze_waits_for_the_kernel(manager: V2Manager, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = tree / "dockyard" / "c1" / "cgroup.events"
    monkeypatch.setattr(v2, "_FREEZE_TIMEOUT", 0.05)
    with pytest.raises(SystemFailure, match="frozen 1"):
        manager.freeze()  # cgroup.events keeps saying frozen 0
    events.write_text("populated 1\nfrozen 1\n")
    manager.freeze()
    assert manager.is_frozen()
    manager.thaw()
    assert not manager.is_frozen()


def test_sigkill_uses_cgroup_kill(manager: V2Manager, writes: list[tuple[str, str, str]]) -> None:
    manager.kill_all(signal.SIGKILL)
    assert leaf_writes(writes) == [("cgroup.kill", "1")]


def test_other_signals_freeze_signal_thaw(manager: V2Manager, tree: Path, writes: list[tuple[str, str, str]]) -> None:
    leaf = tree / "dockyard" / "c1"
    (leaf / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    child = subprocess.Popen(["sleep", "30"])
    try:
        (leaf / "cgroup.procs").write_text(f"{child.pid}\n")
        manager.kill_all(signal.SIGTERM)
        assert child.wait(timeout=5) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait()
    assert leaf_writes(writes) == [("cgroup.freeze", "1"), ("cgroup.freeze", "0")]


def test_stats_from_v2_files(manager: V2Manager) -> None:
    s = manager.stats()
    assert s["cpu"]["usage"]["total"] == 3_000_000 and s["cpu"]["usage"]["kernel"] == 1_000_000
    assert s["cpu"]["throttling"] == {"periods": 7, "throttledPeriods": 2, "throttledTime": 40_000}
    assert s["memory"]["usage"] == {"usage": 5000000, "max": 6000000, "limit": 2**64 - 1, "failcnt": 0}
    assert s["memory"]["swap"]["usage"] == 5001000 and s["memory"]["cache"] == 4096
    assert s["pids"] == {"current": 2, "limit": 0}
    assert s["blkio"]["ioServicedRecursive"] == [
        {"major": 8, "minor": 0, "op": "Read", "value": 1}, {"major": 8, "minor": 0, "op": "Write", "value": 2},
    ]
    assert s["cpuset"]["cpus"] == [0, 1]


def test_oom_kill_count_from_memory_events(manager: V2Manager, tree: Path) -> None:
    assert manager.oom_kill_count() == 1
    (tree / "dockyard" / "c1" / "memory.events").unlink()
    assert manager.oom_kill_count() == 0
