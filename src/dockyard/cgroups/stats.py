"""Statistics in the shape of ``runc events --stats`` "data" (runc's types/events.go).

Every key is always present (zeros and empty lists rather than runc's omitempty), so callers
need no existence checks. CPU times are nanoseconds, memory bytes.
"""

from __future__ import annotations

import os

from dockyard.cgroups import fs
from dockyard.errors import SystemFailure

TYPE_CHECKING = False  # typing is not imported at run time: `dockyard-runtime events` must start fast
if TYPE_CHECKING:
    from typing import Any

UINT64_MAX = 2**64 - 1
_BLKIO_KEYS = (
    "ioServiceBytesRecursive", "ioServicedRecursive", "ioQueueRecursive", "ioServiceTimeRecursive",
    "ioWaitTimeRecursive", "ioMergedRecursive", "ioTimeRecursive", "sectorsRecursive",
)


def _memory_entry(usage: int = 0, limit: int = 0, peak: int = 0, failcnt: int = 0) -> dict[str, int]:
    return {"usage": usage, "max": peak, "limit": limit, "failcnt": failcnt}


def empty() -> dict[str, Any]:
    return {
        "cpu": {
            "usage": {"total": 0, "percpu": [], "percpu_kernel": [], "percpu_user": [], "kernel": 0, "user": 0},
            "throttling": {"periods": 0, "throttledPeriods": 0, "throttledTime": 0},
        },
        "cpuset": {"cpus": [], "mems": [], "cpu_exclusive": 0, "mem_hardwall": 0, "mem_exclusive": 0,
                   "memory_migrate": 0, "memory_spread_page": 0, "memory_spread_slab": 0,
                   "memory_pressure": 0, "sched_load_balance": 0, "sched_relax_domain_level": 0},
        "memory": {"cache": 0, "usage": _memory_entry(), "swap": _memory_entry(), "kernel": _memory_entry(),
                   "kernelTCP": _memory_entry(), "raw": {}},
        "pids": {"current": 0, "limit": 0},
        "blkio": {key: [] for key in _BLKIO_KEYS},
        "hugetlb": {},
    }


def expand_list(text: str) -> list[int]:
    """"0-2,5" -> [0, 1, 2, 5]."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def hugepage_sizes(sysfs: str = "/sys/kernel/mm/hugepages") -> list[str]:
    """Page sizes as the hugetlb controller names them: "2MB", "1GB"."""
    try:
        entries = os.listdir(sysfs)
    except OSError:
        return []
    sizes = []
    for entry in sorted(entries):
        if not (entry.startswith("hugepages-") and entry.endswith("kB")):
            continue
        kb = int(entry[len("hugepages-"):-2])
        if kb >= 1 << 20:
            sizes.append(f"{kb >> 20}GB")
        elif kb >= 1 << 10:
            sizes.append(f"{kb >> 10}MB")
        else:
            sizes.append(f"{kb}KB")
    return sizes


def _pids(d: str, out: dict[str, Any]) -> None:
    limit = fs.read_uint(d, "pids.max")
    out["pids"] = {"current": fs.read_uint(d, "pids.current"), "limit": 0 if limit == UINT64_MAX else limit}


# --- v1 ---


def _v1_cpuacct(d: str, out: dict[str, Any]) -> None:
    usage = out["cpu"]["usage"]
    usage["total"] = fs.read_uint(d, "cpuacct.usage")
    usage["percpu"] = [int(v) for v in fs.read(d, "cpuacct.usage_percpu").split()]
    ticks = fs.read_keyed(d, "cpuacct.stat")
    hz = os.sysconf("SC_CLK_TCK")
    usage["user"] = ticks.get("user", 0) * 1_000_000_000 // hz
    usage["kernel"] = ticks.get("system", 0) * 1_000_000_000 // hz
    per_mode = fs.read_optional(d, "cpuacct.usage_all")
    if per_mode:
        rows = [line.split() for line in per_mode.splitlines()[1:] if line.strip()]
        usage["percpu_user"] = [int(r[1]) for r in rows]
        usage["percpu_kernel"] = [int(r[2]) for r in rows]


def _throttling(stat: dict[str, int], time_key: str, scale: int) -> dict[str, int]:
    return {
        "periods": stat.get("nr_periods", 0),
        "throttledPeriods": stat.get("nr_throttled", 0),
        "throttledTime": stat.get(time_key, 0) * scale,
    }


def _v1_memory_entry(d: str, prefix: str) -> dict[str, int] | None:
    usage = fs.read_optional(d, f"{prefix}.usage_in_bytes")
    if usage is None:  # swap accounting or kmem is not in this kernel
        return None
    where = os.path.join(d, prefix)
    limit = fs.read_optional(d, f"{prefix}.limit_in_bytes")  # kmem's limit is gone in 6.x
    return _memory_entry(
        usage=fs.parse_uint(usage, where),
        limit=fs.parse_uint(limit, where) if limit is not None else 0,
        peak=fs.read_uint(d, f"{prefix}.max_usage_in_bytes"),
        failcnt=fs.read_uint(d, f"{prefix}.failcnt"),
    )


def _v1_memory(d: str, out: dict[str, Any]) -> None:
    mem = out["memory"]
    mem["raw"] = fs.read_keyed(d, "memory.stat")
    mem["cache"] = mem["raw"].get("cache", 0)
    for key, prefix in (("usage", "memory"), ("swap", "memory.memsw"), ("kernel", "memory.kmem"),
                        ("kernelTCP", "memory.kmem.tcp")):
        entry = _v1_memory_entry(d, prefix)
        if entry is not None:
            mem[key] = entry


def _v1_cpuset(d: str, out: dict[str, Any]) -> None:
    cs = out["cpuset"]
    for key in cs:
        text = fs.read_optional(d, f"cpuset.{key}")
        if text is None:
            continue
        cs[key] = expand_list(text) if key in ("cpus", "mems") else int(text.strip())


def parse_blkio_v1(text: str, where: str) -> list[dict[str, Any]]:
    """``8:0 Read 1282048`` / ``8:0 6792`` lines; the ``Total`` line is skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.replace(":", " ").split()
        if not fields or (len(fields) == 2 and fields[0] == "Total"):
            continue
        if len(fields) not in (3, 4):
            raise SystemFailure(f"malformed line {line!r} in {where}")
        op = fields[2] if len(fields) == 4 else ""
        entries.append({"major": int(fields[0]), "minor": int(fields[1]), "op": op, "value": int(fields[-1])})
    return entries


# runc's order: the first group whose first file has content wins
_BLKIO_GROUPS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("blkio.bfq.sectors_recursive", "sectorsRecursive"),
     ("blkio.bfq.io_service_time_recursive", "ioServiceTimeRecursive"),
     ("blkio.bfq.io_wait_time_recursive", "ioWaitTimeRecursive"),
     ("blkio.bfq.io_merged_recursive", "ioMergedRecursive"),
     ("blkio.bfq.io_queued_recursive", "ioQueueRecursive"),
     ("blkio.bfq.time_recursive", "ioTimeRecursive"),
     ("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.sectors_recursive", "sectorsRecursive"),
     ("blkio.io_service_time_recursive", "ioServiceTimeRecursive"),
     ("blkio.io_wait_time_recursive", "ioWaitTimeRecursive"),
     ("blkio.io_merged_recursive", "ioMergedRecursive"),
     ("blkio.io_queued_recursive", "ioQueueRecursive"),
     ("blkio.time_recursive", "ioTimeRecursive"),
     ("blkio.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.throttle.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.throttle.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.throttle.io_serviced", "ioServicedRecursive"),
     ("blkio.throttle.io_service_bytes", "ioServiceBytesRecursive")),
)


def _v1_blkio(d: str, out: dict[str, Any]) -> None:
    for group in _BLKIO_GROUPS:
        first = fs.read_optional(d, group[0][0])
        if not first or not parse_blkio_v1(first, group[0][0]):
            continue
        for name, key in group:
            text = fs.read_optional(d, name) or ""
            out["blkio"][key] = parse_blkio_v1(text, os.path.join(d, name))
        return


def _v1_hugetlb(d: str, out: dict[str, Any]) -> None:
    for size in hugepage_sizes():
        prefix = f"hugetlb.{size}"
        out["hugetlb"][size] = {
            "usage": fs.read_uint(d, f"{prefix}.usage_in_bytes"),
            "max": fs.read_uint(d, f"{prefix}.max_usage_in_bytes"),
            "failcnt": fs.read_uint(d, f"{prefix}.failcnt"),
        }


def v1(dirs: dict[str, str]) -> dict[str, Any]:
    """Stats from the container's directory in each v1 controller (controller -> dir)."""
    out = empty()
    if "cpuacct" in dirs:
        _v1_cpuacct(dirs["cpuacct"], out)
    if "cpu" in dirs:
        out["cpu"]["throttling"] = _throttling(fs.read_keyed(dirs["cpu"], "cpu.stat"), "throttled_time", 1)
    if "cpuset" in dirs:
        _v1_cpuset(dirs["cpuset"], out)
    if "memory" in dirs:
        _v1_memory(dirs["memory"], out)
    if "pids" in dirs:
        _pids(dirs["pids"], out)
    if "blkio" in dirs:
        _v1_blkio(dirs["blkio"], out)
    if "hugetlb" in dirs:
        _v1_hugetlb(dirs["hugetlb"], out)
    return out


# --- v2 ---


def _v2_cpu(stat: dict[str, int], out: dict[str, Any]) -> None:
    usage = out["cpu"]["usage"]
    usage["total"] = stat.get("usage_usec", 0) * 1000
    usage["user"] = stat.get("user_usec", 0) * 1000
    usage["kernel"] = stat.get("system_usec", 0) * 1000
    out["cpu"]["throttling"] = _throttling(stat, "throttled_usec", 1000)


def _v2_memory(d: str, out: dict[str, Any]) -> None:
    mem = out["memory"]
    mem["raw"] = fs.read_keyed(d, "memory.stat")
    mem["cache"] = mem["raw"].get("file", 0)
    peak = fs.read_optional(d, "memory.peak")
    usage = _memory_entry(
        usage=fs.read_uint(d, "memory.current"),
        limit=fs.read_uint(d, "memory.max"),
        peak=fs.parse_uint(peak, d) if peak else 0,
    )
    mem["usage"] = usage
    swap_current = fs.read_optional(d, "memory.swap.current")
    if swap_current is not None:
        swap_limit = fs.read_uint(d, "memory.swap.max")
        # runc reports swap as memory+swap, like v1's memsw
        mem["swap"] = _memory_entry(
            usage=fs.parse_uint(swap_current, d) + usage["usage"],
            limit=swap_limit if swap_limit == UINT64_MAX or usage["limit"] == UINT64_MAX
            else swap_limit + usage["limit"],
        )


def parse_io_stat(text: str) -> dict[str, list[dict[str, Any]]]:
    """v2 io.stat (``8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...``) as v1-style blkio entries."""
    ops = {"rbytes": ("ioServiceBytesRecursive", "Read"), "wbytes": ("ioServiceBytesRecursive", "Write"),
           "rios": ("ioServicedRecursive", "Read"), "wios": ("ioServicedRecursive", "Write")}
    out: dict[str, list[dict[str, Any]]] = {key: [] for key in _BLKIO_KEYS}
    for line in text.splitlines():
        fields = line.split()
        if not fields or ":" not in fields[0]:
            continue
        major, _, minor = fields[0].partition(":")
        for item in fields[1:]:
            name, _, value = item.partition("=")
            if name in ops:
                key, op = ops[name]
                out[key].append({"major": int(major), "minor": int(minor), "op": op, "value": int(value)})
    return out


def _v2_hugetlb(d: str, out: dict[str, Any]) -> None:
    for size in hugepage_sizes():
        current = fs.read_optional(d, f"hugetlb.{size}.current")
        if current is None:
            continue
        events = fs.read_keyed(d, f"hugetlb.{size}.events")
        out["hugetlb"][size] = {"usage": fs.parse_uint(current, d), "max": 0, "failcnt": events.get("max", 0)}


def v2(d: str) -> dict[str, Any]:
    """Stats from a v2 directory; controllers not enabled there are left at zero."""
    out = empty()
    cpu = fs.read_optional(d, "cpu.stat")  # core file: present even without the cpu controller
    if cpu is not None:
        _v2_cpu(fs.parse_keyed(cpu, os.path.join(d, "cpu.stat")), out)
    if os.path.exists(os.path.join(d, "memory.stat")):
        _v2_memory(d, out)
    if os.path.exists(os.path.join(d, "pids.current")):
        _pids(d, out)
    else:
        out["pids"]["current"] = len(fs.procs(d))
    io = fs.read_optional(d, "io.stat")
    if io is not None:
        out["blkio"] = parse_io_stat(io)
    cpus = fs.read_optional(d, "cpuset.cpus.effective")
    if cpus is not None:
        out["cpuset"]["cpus"] = expand_list(cpus)
        out["cpuset"]["mems"] = expand_list(fs.read(d, "cpuset.mems.effective"))
    _v2_hugetlb(d, out)
    return out
