"""The OCI ``linux.resources`` object, checked and turned into typed values.

``parse_resources`` validates everything before a manager writes anything, so an invalid
spec leaves the cgroup untouched. Values follow runc's reading of the spec:

- ``None`` means "not given: leave the kernel's value alone". For memory limit, reservation
  and swap, CPU shares, quota, period, realtime runtime and period, block IO weights, a ``0``
  also means "not given" (runc treats them so).
- ``-1`` means unlimited where the kernel has an unlimited value (memory, swap, quota,
  realtime runtime, pids).
- ``memory.kernel`` and ``memory.kernelTCP`` are accepted and ignored: kernels since 5.4
  deprecate them and 6.x removed them (runc ignores them too).

Version-specific conversions for cgroup v2 (shares to weight and so on) live here too, as
pure functions, so that the v2 translation is testable without a v2 host.
"""

from __future__ import annotations

import math

from dockyard.cgroups.devices import parse_rules
from dockyard.cgroups.record import Record
from dockyard.errors import InvalidSpec, NotImplementedFeature

# On the runtime's hot path (``set`` runs on every create): no typing, dataclasses or re,
# which together cost more than the rest of the command; tests/unit/test_cgroups_imports.py
# keeps it so. The value classes are Records (frozen-dataclass behaviour without dataclasses).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.cgroups.devices import DeviceRule

SHARES_MIN, SHARES_MAX = 2, 262144
CFS_MIN_US, CFS_PERIOD_MAX_US = 1000, 1000000
BLKIO_WEIGHT_MIN, BLKIO_WEIGHT_MAX = 10, 1000
INT64_MAX = 2**63 - 1
UINT32_MAX = 2**32 - 1
_PAGE_SIZE_UNITS = ("KB", "MB", "GB", "TB", "PB")


class Memory(Record):
    __slots__ = ("limit", "reservation", "swap", "swappiness", "disable_oom_killer", "use_hierarchy",
                 "check_before_update")
    limit: int | None
    reservation: int | None
    swap: int | None
    swappiness: int | None
    disable_oom_killer: bool | None
    use_hierarchy: bool | None
    check_before_update: bool

    def __init__(
        self,
        limit: int | None = None,
        reservation: int | None = None,
        swap: int | None = None,
        swappiness: int | None = None,
        disable_oom_killer: bool | None = None,
        use_hierarchy: bool | None = None,
        check_before_update: bool = False,
    ) -> None:
        self._init(limit, reservation, swap, swappiness, disable_oom_killer, use_hierarchy, check_before_update)


class Cpu(Record):
    __slots__ = ("shares", "quota", "period", "burst", "realtime_runtime", "realtime_period", "cpus", "mems", "idle")
    shares: int | None
    quota: int | None
    period: int | None
    burst: int | None
    realtime_runtime: int | None
    realtime_period: int | None
    cpus: str | None
    mems: str | None
    idle: int | None

    def __init__(
        self,
        shares: int | None = None,
        quota: int | None = None,
        period: int | None = None,
        burst: int | None = None,
        realtime_runtime: int | None = None,
        realtime_period: int | None = None,
        cpus: str | None = None,
        mems: str | None = None,
        idle: int | None = None,
    ) -> None:
        self._init(shares, quota, period, burst, realtime_runtime, realtime_period, cpus, mems, idle)


class WeightDevice(Record):
    __slots__ = ("major", "minor", "weight", "leaf_weight")
    major: int
    minor: int
    weight: int | None
    leaf_weight: int | None

    def __init__(self, major: int, minor: int, weight: int | None, leaf_weight: int | None) -> None:
        self._init(major, minor, weight, leaf_weight)


class ThrottleDevice(Record):
    __slots__ = ("major", "minor", "rate")
    major: int
    minor: int
    rate: int

    def __init__(self, major: int, minor: int, rate: int) -> None:
        self._init(major, minor, rate)


class BlockIO(Record):
    __slots__ = ("weight", "leaf_weight", "weight_devices", "read_bps", "write_bps", "read_iops", "write_iops")
    weight: int | None
    leaf_weight: int | None
    weight_devices: tuple[WeightDevice, ...]
    read_bps: tuple[ThrottleDevice, ...]
    write_bps: tuple[ThrottleDevice, ...]
    read_iops: tuple[ThrottleDevice, ...]
    write_iops: tuple[ThrottleDevice, ...]

    def __init__(
        self,
        weight: int | None = None,
        leaf_weight: int | None = None,
        weight_devices: tuple[WeightDevice, ...] = (),
        read_bps: tuple[ThrottleDevice, ...] = (),
        write_bps: tuple[ThrottleDevice, ...] = (),
        read_iops: tuple[ThrottleDevice, ...] = (),
        write_iops: tuple[ThrottleDevice, ...] = (),
    ) -> None:
        self._init(weight, leaf_weight, weight_devices, read_bps, write_bps, read_iops, write_iops)

    def throttles(self) -> list[tuple[str, str, tuple[ThrottleDevice, ...]]]:
        """(v1 file, v2 io.max key, rules) for each throttle kind."""
        return [
            ("blkio.throttle.read_bps_device", "rbps", self.read_bps),
            ("blkio.throttle.write_bps_device", "wbps", self.write_bps),
            ("blkio.throttle.read_iops_device", "riops", self.read_iops),
            ("blkio.throttle.write_iops_device", "wiops", self.write_iops),
        ]


class HugepageLimit(Record):
    __slots__ = ("page_size", "limit")
    page_size: str
    limit: int

    def __init__(self, page_size: str, limit: int) -> None:
        self._init(page_size, limit)


class Network(Record):
    __slots__ = ("class_id", "priorities")
    class_id: int | None
    priorities: tuple[tuple[str, int], ...]

    def __init__(self, class_id: int | None = None, priorities: tuple[tuple[str, int], ...] = ()) -> None:
        self._init(class_id, priorities)


class Resources(Record):
    """The parsed ``linux.resources``; unhashable, like the dataclass was (``unified`` is a dict)."""

    __slots__ = ("memory", "cpu", "pids_limit", "block_io", "hugepage_limits", "network", "devices", "unified")
    memory: Memory | None
    cpu: Cpu | None
    pids_limit: int | None
    block_io: BlockIO | None
    hugepage_limits: tuple[HugepageLimit, ...]
    network: Network | None
    devices: tuple[DeviceRule, ...] | None
    unified: dict[str, str]

    def __init__(
        self,
        memory: Memory | None = None,
        cpu: Cpu | None = None,
        pids_limit: int | None = None,
        block_io: BlockIO | None = None,
        hugepage_limits: tuple[HugepageLimit, ...] = (),
        network: Network | None = None,
        devices: tuple[DeviceRule, ...] | None = None,
        unified: dict[str, str] | None = None,
    ) -> None:
        self._init(memory, cpu, pids_limit, block_io, hugepage_limits, network, devices,
                   {} if unified is None else unified)


def _where(section: str, key: str) -> str:
    return f"linux.resources.{section}.{key}" if section else f"linux.resources.{key}"


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidSpec(f"{where} must be an object, not {type(value).__name__}")
    return value


def _int(d: dict[str, Any], key: str, where: str, lo: int | None = None, hi: int | None = None) -> int | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(f"{where}.{key} must be an integer, not {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InvalidSpec(f"{where}.{key} = {value} is out of range [{lo}, {hi}]")
    return value


def _bool(d: dict[str, Any], key: str, where: str) -> bool | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidSpec(f"{where}.{key} must be true or false, not {value!r}")
    return value


def _str(d: dict[str, Any], key: str, where: str) -> str | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidSpec(f"{where}.{key} must be a string, not {value!r}")
    return value


def _list(d: dict[str, Any], key: str, where: str) -> list[Any]:
    value = d.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidSpec(f"{where}.{key} must be an array, not {type(value).__name__}")
    return value


def _unset_zero(value: int | None) -> int | None:
    return None if value == 0 else value


def _limit(d: dict[str, Any], key: str, where: str) -> int | None:
    """A byte or count limit: -1 for unlimited, 0 for unset, else positive."""
    value = _int(d, key, where, hi=INT64_MAX)
    if value is not None and value < -1:
        raise InvalidSpec(f"{where}.{key} = {value}: a limit is -1 (unlimited), 0 (unset) or positive")
    return _unset_zero(value)


def _without_final_newline(text: str) -> str:
    """What a ``^...$`` pattern saw: ``$`` also matches before one final newline (kept as before)."""
    return text[:-1] if text.endswith("\n") else text


def _is_cpu_list(text: str) -> bool:
    """Comma-separated decimal numbers or ``lo-hi`` ranges, e.g. ``0-3,5``.

    Decimal as ``re``'s ``\\d`` reads it (``str.isdecimal``: any Unicode decimal digit).
    """
    for part in _without_final_newline(text).split(","):
        lo, dash, hi = part.partition("-")
        if not lo.isdecimal() or (dash and not hi.isdecimal()):
            return False
    return True


def _is_page_size(text: str) -> bool:
    """A decimal number and a unit, e.g. ``2MB``, ``1GB``."""
    text = _without_final_newline(text)
    return text[-2:] in _PAGE_SIZE_UNITS and text[:-2].isdecimal()


def _cpu_list(d: dict[str, Any], key: str, where: str) -> str | None:
    value = _str(d, key, where)
    if not value:
        return None
    compact = value.replace(" ", "")
    if not _is_cpu_list(compact):
        raise InvalidSpec(f"{where}.{key} = {value!r} is not a list like '0-3,5'")
    for part in compact.split(","):
        lo, _, hi = part.partition("-")
        if hi and int(lo) > int(hi):
            raise InvalidSpec(f"{where}.{key} = {value!r}: range {part} runs backwards")
    return compact


def parse_memory(d: dict[str, Any]) -> Memory:
    where = "linux.resources.memory"
    for ignored in ("kernel", "kernelTCP"):
        _int(d, ignored, where)
    swappiness = _int(d, "swappiness", where, lo=-1, hi=100)
    mem = Memory(
        limit=_limit(d, "limit", where),
        reservation=_limit(d, "reservation", where),
        swap=_limit(d, "swap", where),
        swappiness=None if swappiness == -1 else swappiness,
        disable_oom_killer=_bool(d, "disableOOMKiller", where),
        use_hierarchy=_bool(d, "useHierarchy", where),
        check_before_update=bool(_bool(d, "checkBeforeUpdate", where)),
    )
    if mem.limit is not None and mem.limit > 0 and mem.swap is not None and 0 < mem.swap < mem.limit:
        raise InvalidSpec(
            f"{where}.swap = {mem.swap} is below {where}.limit = {mem.limit} (swap is memory+swap, so it must be >= limit)"
        )
    return mem


def parse_cpu(d: dict[str, Any]) -> Cpu:
    where = "linux.resources.cpu"
    shares = _unset_zero(_int(d, "shares", where, lo=0))
    if shares is not None and not SHARES_MIN <= shares <= SHARES_MAX:
        raise InvalidSpec(f"{where}.shares = {shares} is out of range [{SHARES_MIN}, {SHARES_MAX}]")
    quota = _unset_zero(_int(d, "quota", where, hi=INT64_MAX))
    if quota is not None and quota != -1 and quota < CFS_MIN_US:
        raise InvalidSpec(f"{where}.quota = {quota}: -1 (unlimited) or at least {CFS_MIN_US} microseconds")
    period = _unset_zero(_int(d, "period", where, lo=0))
    if period is not None and not CFS_MIN_US <= period <= CFS_PERIOD_MAX_US:
        raise InvalidSpec(f"{where}.period = {period} is out of range [{CFS_MIN_US}, {CFS_PERIOD_MAX_US}] microseconds")
    return Cpu(
        shares=shares,
        quota=quota,
        period=period,
        burst=_int(d, "burst", where, lo=0, hi=INT64_MAX),
        realtime_runtime=_unset_zero(_int(d, "realtimeRuntime", where, lo=-1, hi=INT64_MAX)),
        realtime_period=_unset_zero(_int(d, "realtimePeriod", where, lo=0, hi=INT64_MAX)),
        cpus=_cpu_list(d, "cpus", where),
        mems=_cpu_list(d, "mems", where),
        idle=_int(d, "idle", where, lo=0, hi=1),
    )


def _device_numbers(item: dict[str, Any], where: str) -> tuple[int, int]:
    major = _int(item, "major", where, lo=0, hi=UINT32_MAX)
    minor = _int(item, "minor", where, lo=0, hi=UINT32_MAX)
    if major is None or minor is None:
        raise InvalidSpec(f"{where} needs both major and minor")
    return major, minor


def _weight(d: dict[str, Any], key: str, where: str) -> int | None:
    value = _unset_zero(_int(d, key, where, lo=0))
    if value is not None and not BLKIO_WEIGHT_MIN <= value <= BLKIO_WEIGHT_MAX:
        raise InvalidSpec(f"{where}.{key} = {value} is out of range [{BLKIO_WEIGHT_MIN}, {BLKIO_WEIGHT_MAX}]")
    return value


def _throttles(d: dict[str, Any], key: str) -> tuple[ThrottleDevice, ...]:
    out = []
    for i, item in enumerate(_list(d, key, "linux.resources.blockIO")):
        where = f"linux.resources.blockIO.{key}[{i}]"
        major, minor = _device_numbers(_obj(item, where), where)
        rate = _int(item, "rate", where, lo=0, hi=2**64 - 1)
        if rate is None:
            raise InvalidSpec(f"{where} needs a rate")
        out.append(ThrottleDevice(major, minor, rate))
    return tuple(out)


def parse_block_io(d: dict[str, Any]) -> BlockIO:
    where = "linux.resources.blockIO"
    devices = []
    for i, item in enumerate(_list(d, "weightDevice", where)):
        w = f"{where}.weightDevice[{i}]"
        major, minor = _device_numbers(_obj(item, w), w)
        devices.append(WeightDevice(major, minor, _weight(item, "weight", w), _weight(item, "leafWeight", w)))
    return BlockIO(
        weight=_weight(d, "weight", where),
        leaf_weight=_weight(d, "leafWeight", where),
        weight_devices=tuple(devices),
        read_bps=_throttles(d, "throttleReadBpsDevice"),
        write_bps=_throttles(d, "throttleWriteBpsDevice"),
        read_iops=_throttles(d, "throttleReadIOPSDevice"),
        write_iops=_throttles(d, "throttleWriteIOPSDevice"),
    )


def parse_hugepages(items: list[Any]) -> tuple[HugepageLimit, ...]:
    out = []
    for i, item in enumerate(items):
        where = f"linux.resources.hugepageLimits[{i}]"
        page = _str(_obj(item, where), "pageSize", where)
        if not page or not _is_page_size(page):
            raise InvalidSpec(f"{where}.pageSize = {page!r} is not a size like '2MB' or '1GB'")
        limit = _int(item, "limit", where, lo=0, hi=2**64 - 1)
        if limit is None:
            raise InvalidSpec(f"{where} needs a limit")
        out.append(HugepageLimit(page, limit))
    return tuple(out)


def parse_network(d: dict[str, Any]) -> Network:
    where = "linux.resources.network"
    priorities = []
    for i, item in enumerate(_list(d, "priorities", where)):
        w = f"{where}.priorities[{i}]"
        name = _str(_obj(item, w), "name", w)
        prio = _int(item, "priority", w, lo=0, hi=UINT32_MAX)
        if not name or prio is None:
            raise InvalidSpec(f"{w} needs an interface name and a priority")
        priorities.append((name, prio))
    return Network(class_id=_int(d, "classID", where, lo=0, hi=UINT32_MAX), priorities=tuple(priorities))


def parse_unified(d: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in d.items():
        where = f"linux.resources.unified[{key!r}]"
        if not isinstance(key, str) or not key or "/" in key or key in (".", ".."):
            raise InvalidSpec(f"{where}: the key must be a control file name without slashes")
        if "." not in key:
            raise InvalidSpec(f"{where}: the key must look like CONTROLLER.PARAMETER")
        if not isinstance(value, str):
            raise InvalidSpec(f"{where} must be a string, not {value!r}")
        out[key] = value
    return out


def parse_resources(resources: Any) -> Resources:
    """Validate the OCI object and return typed values; raises InvalidSpec naming the field."""
    if resources is None:
        return Resources()
    res = _obj(resources, "linux.resources")
    pids = res.get("pids")
    pids_limit = None
    if pids is not None:
        pids_limit = _int(_obj(pids, "linux.resources.pids"), "limit", "linux.resources.pids", lo=-1, hi=INT64_MAX)
    if res.get("rdma"):
        raise NotImplementedFeature("linux.resources.rdma (no rdma cgroup controller support)")
    devices = None
    if res.get("devices") is not None:
        devices = parse_rules(_list(res, "devices", "linux.resources"))
    return Resources(
        memory=parse_memory(_obj(res["memory"], "linux.resources.memory")) if res.get("memory") is not None else None,
        cpu=parse_cpu(_obj(res["cpu"], "linux.resources.cpu")) if res.get("cpu") is not None else None,
        pids_limit=pids_limit,
        block_io=parse_block_io(_obj(res["blockIO"], "linux.resources.blockIO")) if res.get("blockIO") is not None else None,
        hugepage_limits=parse_hugepages(_list(res, "hugepageLimits", "linux.resources")),
        network=parse_network(_obj(res["network"], "linux.resources.network")) if res.get("network") is not None else None,
        devices=devices,
        unified=parse_unified(_obj(res["unified"], "linux.resources.unified")) if res.get("unified") is not None else {},
    )


def pids_value(limit: int) -> str:
    """pids.max for an OCI limit: -1 is "max"; 0 is written as 1 like runc (systemd cannot do 0)."""
    if limit < 0:
        return "max"
    return str(max(limit, 1))


# --- cgroup v2 conversions (runc's formulas) ---


def cpu_shares_to_weight(shares: int) -> int:
    """v1 shares [2, 262144] (default 1024) to v2 cpu.weight [1, 10000] (default 100).

    runc's quadratic fit in log space: 2 -> 1, 1024 -> 100, 262144 -> 10000.
    """
    if shares <= SHARES_MIN:
        return 1
    if shares >= SHARES_MAX:
        return 10000
    log = math.log2(shares)
    exponent = (log * log + 125 * log) / 612.0 - 7.0 / 34.0
    return int(math.ceil(10**exponent))


def blkio_weight_to_io_weight(weight: int) -> int:
    """v1 blkio weight [10, 1000] linearly to v2 io.weight [1, 10000]."""
    return 1 + (weight - BLKIO_WEIGHT_MIN) * 9999 // 990


def swap_to_v2(swap: int | None, limit: int | None) -> int | None:
    """OCI swap is memory+swap; v2 memory.swap.max is swap alone. None: leave swap alone.

    Raises InvalidSpec where the spec cannot be expressed (swap without a memory limit).
    """
    if limit == -1 and swap is None:
        return -1  # unlimited memory with swap unspecified means both unlimited, as on v1
    if swap is None or swap == -1:
        return swap
    if limit == -1:
        return swap
    if limit is None:
        raise InvalidSpec("linux.resources.memory.swap needs memory.limit on cgroup v2 (swap.max = swap - limit)")
    return swap - limit


def max_or_number(value: int) -> str:
    return "max" if value == -1 else str(value)
