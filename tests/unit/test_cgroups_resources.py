"""Validation of OCI linux.resources and the v1 -> v2 formulas."""

from __future__ import annotations

import copy
import pickle
import re
from typing import Any

import pytest

from dockyard.cgroups import parse_resources
from dockyard.cgroups.resources import (
    BlockIO,
    Cpu,
    HugepageLimit,
    Memory,
    Resources,
    ThrottleDevice,
    blkio_weight_to_io_weight,
    cpu_shares_to_weight,
    pids_value,
    swap_to_v2,
)
from dockyard.errors import InvalidSpec, NotImplementedFeature


def test_empty_and_missing_sections_leave_everything_alone() -> None:
    res = parse_resources({})
    assert res.memory is None and res.cpu is None and res.pids_limit is None and res.devices is None
    assert parse_resources(None) == res


def test_full_spec_parses() -> None:
    res = parse_resources({
        "memory": {"limit": 1 << 30, "reservation": 1 << 29, "swap": 2 << 30, "kernel": 1, "kernelTCP": 2,
                   "swappiness": 10, "disableOOMKiller": True, "useHierarchy": True},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "realtimeRuntime": 950, "realtimePeriod": 1000,
                "cpus": "0-1, 3", "mems": "0", "idle": 1, "burst": 0},
        "pids": {"limit": 64},
        "blockIO": {"weight": 500, "leafWeight": 300,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 600}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "network": {"classID": 0x100001, "priorities": [{"name": "eth0", "priority": 5}]},
        "devices": [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
    })
    assert res.memory is not None and res.memory.limit == 1 << 30 and res.memory.swap == 2 << 30
    assert res.cpu is not None and res.cpu.cpus == "0-1,3" and res.cpu.burst == 0
    assert res.pids_limit == 64
    assert res.block_io is not None and res.block_io.read_bps[0].rate == 1048576
    assert res.hugepage_limits[0].page_size == "2MB"
    assert res.network is not None and res.network.priorities == (("eth0", 5),)
    assert res.devices is not None and [r.cgroup_string() for r in res.devices] == ["a *:* rwm", "c 1:3 rw"]


def test_zero_means_unset_and_minus_one_unlimited() -> None:
    res = parse_resources({"memory": {"limit": 0, "swap": -1, "swappiness": -1}, "cpu": {"shares": 0, "quota": -1}})
    assert res.memory is not None and res.memory.limit is None and res.memory.swap == -1
    assert res.memory.swappiness is None
    assert res.cpu is not None and res.cpu.shares is None and res.cpu.quota == -1


@pytest.mark.parametrize(
    "resources, field",
    [
        ({"memory": {"limit": -2}}, "memory.limit"),
        ({"memory": {"reservation": -5}}, "memory.reservation"),
        ({"memory": {"limit": 100 << 20, "swap": 50 << 20}}, "memory.swap"),
        ({"memory": {"limit": "1g"}}, "memory.limit"),
        ({"memory": {"limit": True}}, "memory.limit"),
        ({"memory": {"swappiness": 101}}, "swappiness"),
        ({"memory": {"disableOOMKiller": 1}}, "disableOOMKiller"),
        ({"memory": {"kernel": "x"}}, "memory.kernel"),
        ({"memory": []}, "memory"),
        ({"cpu": {"shares": 1}}, "cpu.shares"),
        ({"cpu": {"shares": 262145}}, "cpu.shares"),
        ({"cpu": {"quota": 999}}, "cpu.quota"),
        ({"cpu": {"quota": -2}}, "cpu.quota"),
        ({"cpu": {"period": 999}}, "cpu.period"),
        ({"cpu": {"period": 1000001}}, "cpu.period"),
        ({"cpu": {"cpus": "0-"}}, "cpu.cpus"),
        ({"cpu": {"cpus": "3-1"}}, "cpu.cpus"),
        ({"cpu": {"mems": "a"}}, "cpu.mems"),
        ({"cpu": {"idle": 2}}, "cpu.idle"),
        ({"cpu": {"realtimeRuntime": -2}}, "realtimeRuntime"),
        ({"pids": {"limit": -2}}, "pids.limit"),
        ({"pids": 5}, "pids"),
        ({"blockIO": {"weight": 5}}, "blockIO.weight"),
        ({"blockIO": {"leafWeight": 1001}}, "blockIO.leafWeight"),
        ({"blockIO": {"weightDevice": [{"major": 8, "weight": 100}]}}, "weightDevice[0]"),
        ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0}]}}, "throttleReadBpsDevice[0]"),
        ({"blockIO": {"throttleWriteIOPSDevice": [{"major": -1, "minor": 0, "rate": 1}]}}, "throttleWriteIOPSDevice[0]"),
        ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]}, "pageSize"),
        ({"hugepageLimits": [{"pageSize": "2MB"}]}, "hugepageLimits[0]"),
        ({"network": {"classID": -1}}, "network.classID"),
        ({"network": {"priorities": [{"name": "", "priority": 1}]}}, "priorities[0]"),
        ({"devices": [{"access": "rwm"}]}, "devices[0].allow"),
        ({"devices": [{"allow": True, "access": ""}]}, "devices[0]"),
        ({"devices": [{"allow": True, "access": "rx"}]}, "devices[0]"),
        ({"devices": [{"allow": True, "type": "p", "access": "r"}]}, "devices[0].type"),
        ({"devices": [{"allow": True, "type": "c", "major": -2, "access": "r"}]}, "devices[0].major"),
        ({"devices": {"allow": True}}, "devices"),
        ({"unified": {"../memory.max": "1"}}, "unified"),
        ({"unified": {"memory": "1"}}, "unified"),
        ({"unified": {"memory.max": 5}}, "unified"),
        ([], "linux.resources"),
    ],
)
def test_invalid_values_are_refused_naming_the_field(resources: Any, field: str) -> None:
    with pytest.raises(InvalidSpec, match=field.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        parse_resources(resources)


def test_rdma_is_not_implemented() -> None:
    with pytest.raises(NotImplementedFeature, match="rdma"):
        parse_resources({"rdma": {"mlx5_1": {"hcaHandles": 3}}})


# runc's own table (utils_test.go): min, just above, default, just below max, max, beyond
@pytest.mark.parametrize("shares, weight", [(1, 1), (2, 1), (3, 2), (1024, 100), (262143, 10000), (262144, 10000), (262145, 10000)])
def test_shares_to_weight_is_runcs_formula(shares: int, weight: int) -> None:
    assert cpu_shares_to_weight(shares) == weight


@pytest.mark.parametrize("blkio, io", [(10, 1), (1000, 10000), (500, 4950), (100, 910)])
def test_blkio_weight_to_io_weight_is_linear(blkio: int, io: int) -> None:
    assert blkio_weight_to_io_weight(blkio) == io


@pytest.mark.parametrize(
    "swap, limit, expected",
    [
        (None, None, None),
        (None, 100, None),
        (None, -1, -1),
        (-1, 100, -1),
        (300, 100, 200),
        (100, 100, 0),
        (300, -1, 300),
    ],
)
def test_swap_to_v2_subtracts_memory(swap: int | None, limit: int | None, expected: int | None) -> None:
    assert swap_to_v2(swap, limit) == expected


def test_swap_without_memory_limit_cannot_be_expressed_on_v2() -> None:
    with pytest.raises(InvalidSpec, match="needs memory.limit"):
        swap_to_v2(300, None)


@pytest.mark.parametrize("limit, value", [(-1, "max"), (0, "1"), (1, "1"), (64, "64")])
def test_pids_value_follows_runc(limit: int, value: str) -> None:
    assert pids_value(limit) == value


# The grammar the parser kept when it stopped using re (the runtime must not import it): these
# were the patterns, matched with re.match, so "$" also accepted one final newline.
OLD_CPU_LIST = r"^\d+(-\d+)?(,\d+(-\d+)?)*$"
OLD_PAGE_SIZE = r"^\d+(KB|MB|GB|TB|PB)$"
TRICKY = ["0", "0-3", "0-3,5", "0,1,2", "10-11,4-4", "0-3\n", "0-3\n\n", "\n", "1\n2", "0-", "-1", "1--2", "1-2-3",
          ",", "0,", ",0", "0,,1", "0-3\t", "a", "٣", "٠-٣", "²", "1²", "+1", "1_0", "0x1"]


@pytest.mark.parametrize("text", TRICKY + [" 0 - 3 , 5 ", "0 3"])
def test_cpu_lists_accept_what_the_old_pattern_accepted(text: str) -> None:
    accepted = bool(re.match(OLD_CPU_LIST, text.replace(" ", "")))
    if accepted:
        assert parse_resources({"cpu": {"cpus": text}}).cpu.cpus == text.replace(" ", "")  # type: ignore[union-attr]
    else:
        with pytest.raises(InvalidSpec, match="cpu.cpus"):
            parse_resources({"cpu": {"cpus": text}})


@pytest.mark.parametrize("text", TRICKY + ["2MB", "1GB", "64KB", "2MB\n", "2MB\n\n", "MB", "2mb", "2M", "2MBB", "٢MB",
                                           "²MB", " 2MB", "2 MB", "2EB", "B", ""])
def test_page_sizes_accept_what_the_old_pattern_accepted(text: str) -> None:
    spec = {"hugepageLimits": [{"pageSize": text, "limit": 1}]}
    if re.match(OLD_PAGE_SIZE, text):
        assert parse_resources(spec).hugepage_limits[0].page_size == text
    else:
        with pytest.raises(InvalidSpec, match=r"hugepageLimits\[0\]\.pageSize"):
            parse_resources(spec)


def test_values_compare_hash_and_print_like_the_frozen_dataclasses_they_were() -> None:
    spec = {"memory": {"limit": 1 << 20}, "cpu": {"shares": 512}, "blockIO": {"weight": 100},
            "network": {"classID": 1}, "hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}
    res, again = parse_resources(spec), parse_resources(spec)
    assert res == again and res != parse_resources({}) and res != object()
    assert res.memory == Memory(limit=1 << 20) and hash(res.memory) == hash(Memory(limit=1 << 20))
    assert len({res.cpu, again.cpu, res.block_io, again.block_io, res.network, again.network}) == 3
    assert repr(Cpu(shares=512)) == (
        "Cpu(shares=512, quota=None, period=None, burst=None, realtime_runtime=None, realtime_period=None, "
        "cpus=None, mems=None, idle=None)"
    )
    assert repr(HugepageLimit("2MB", 1)) == "HugepageLimit(page_size='2MB', limit=1)"
    assert Resources().unified == {} and Resources().unified is not Resources().unified
    with pytest.raises(TypeError):
        hash(res)  # unified is a dict, as with the dataclass
    with pytest.raises(AttributeError):  # FrozenInstanceError was an AttributeError too
        res.memory.limit = 5  # type: ignore[misc, union-attr]
    with pytest.raises(AttributeError):
        res.surprise = 1  # type: ignore[attr-defined]
    assert copy.deepcopy(res) == res and pickle.loads(pickle.dumps(res)) == res
    assert BlockIO(read_bps=(ThrottleDevice(8, 0, 1),)).throttles()[0] == (
        "blkio.throttle.read_bps_device", "rbps", (ThrottleDevice(8, 0, 1),))
