"""cgroup v2: one directory in the unified hierarchy.

OCI resources are written for v1; the translation follows runc (see ``resources.py`` for the
formulas). What v2 cannot express is refused with NotImplementedFeature rather than dropped:
realtime CPU bandwidth, blkio leaf weights, net_cls/net_prio, swappiness, disabling the OOM
killer, turning memory hierarchy off. Device rules become an eBPF program (``ebpf.py``).
"""

from __future__ import annotations

import errno
import os
import time

from dockyard.cgroups import fs, paths
from dockyard.cgroups.base import CgroupManager
from dockyard.errors import InvalidArgument, NotImplementedFeature, SystemFailure

# On the runtime's hot path (create, state, kill, delete) only the modules above load;
# resources, devices, ebpf (ctypes) and stats are imported by the methods that need them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.cgroups.resources import Resources

_FREEZE_TIMEOUT = 10.0
_SETTINGS = {
    "memory.max": "memory.limit", "memory.swap.max": "memory.swap", "memory.low": "memory.reservation",
    "cpu.weight": "cpu.shares", "cpu.max": "cpu.quota/cpu.period", "cpu.max.burst": "cpu.burst",
    "cpu.idle": "cpu.idle", "cpuset.cpus": "cpu.cpus", "cpuset.mems": "cpu.mems", "pids.max": "pids.limit",
    "io.weight": "blockIO.weight", "io.bfq.weight": "blockIO.weight", "io.max": "blockIO.throttle*",
}


class V2Manager(CgroupManager):
    version = 2

    def __init__(self, path: str, root: str, directory: str) -> None:
        self.path = path
        self.root = root
        self.dir = directory

    @classmethod
    def open(cls, path: str, root: str = paths.DEFAULT_ROOT, own: dict[str, str] | None = None) -> V2Manager:
        if own is None and not path.startswith("/"):
            own = paths.current_cgroup_paths()
        return cls(path, root, paths.v2_dir(root, path, own or {}))

    # --- lifecycle ---

    def create(self) -> None:
        """mkdir each level below the root, enabling in each parent the controllers it has."""
        parent = self.root
        for part in os.path.relpath(self.dir, self.root).split("/"):
            self._enable_controllers(parent)
            current = os.path.join(parent, part)
            try:
                os.makedirs(current, exist_ok=True)
            except OSError as e:
                raise SystemFailure(f"creating cgroup {current}: {e.strerror}", e.errno or 0) from None
            parent = current

    @staticmethod
    def _enable_controllers(parent: str) -> None:
        """Best effort, like runc: a parent with processes of its own refuses (EBUSY), and set()
        then reports the controller a limit needs as missing."""
        available = (fs.read_optional(parent, "cgroup.controllers") or "").split()
        enabled = set((fs.read_optional(parent, "cgroup.subtree_control") or "").split())
        wanted = [c for c in available if c not in enabled]
        if not wanted:
            return
        try:
            fs.write(parent, "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
        except SystemFailure:
            for c in wanted:
                try:
                    fs.write(parent, "cgroup.subtree_control", f"+{c}")
                except SystemFailure:
                    pass

    def add_process(self, pid: int) -> None:
        fs.write_pid(self.dir, pid)

    def v2_dir(self) -> str | None:
        return self.dir

    def destroy(self) -> None:
        fs.remove_tree(self.dir)

    # --- resources ---

    def set(self, resources: dict[str, Any]) -> None:
        from dockyard.cgroups.resources import parse_resources

        res = parse_resources(resources)
        writes = self.plan(res)
        program = None
        if res.devices is not None:
            from dockyard.cgroups import ebpf
            from dockyard.cgroups.devices import Emulator

            program = ebpf.assemble(Emulator.from_rules(res.devices))
        fs.check_targets(writes, _SETTINGS)
        fs.apply_writes(writes)
        if program is not None:
            ebpf.attach(self.dir, program)

    def plan(self, res: Resources) -> list[fs.Write]:
        """The writes for `res`; raises before any write for what v2 cannot do."""
        from dockyard.cgroups.resources import pids_value

        d = self.dir
        writes: list[fs.Write] = []
        if res.memory is not None:
            writes += self._plan_memory(res)
        if res.cpu is not None:
            writes += self._plan_cpu(res)
        if res.pids_limit is not None:
            writes.append(fs.Write(d, "pids.max", pids_value(res.pids_limit)))
        if res.block_io is not None:
            writes += self._plan_io(res)
        for hp in res.hugepage_limits:
            writes.append(fs.Write(d, f"hugetlb.{hp.page_size}.max", str(hp.limit)))
            if os.path.exists(os.path.join(d, f"hugetlb.{hp.page_size}.rsvd.max")):
                writes.append(fs.Write(d, f"hugetlb.{hp.page_size}.rsvd.max", str(hp.limit)))
        if res.network is not None and (res.network.class_id is not None or res.network.priorities):
            raise NotImplementedFeature("linux.resources.network on cgroup v2 (there is no net_cls or net_prio)")
        for key, value in res.unified.items():
            writes += [fs.Write(d, key, line) for line in value.splitlines() or [""]]
        return writes

    def _plan_memory(self, res: Resources) -> list[fs.Write]:
        from dockyard.cgroups.resources import max_or_number, swap_to_v2

        m = res.memory
        assert m is not None
        d = self.dir
        if m.disable_oom_killer:
            raise NotImplementedFeature("memory.disableOOMKiller on cgroup v2")
        if m.swappiness is not None:
            raise NotImplementedFeature("memory.swappiness on cgroup v2")
        if m.use_hierarchy is False:
            raise NotImplementedFeature("memory.useHierarchy = false on cgroup v2 (always hierarchical)")
        swap = swap_to_v2(m.swap, m.limit)
        if m.check_before_update:
            usage = fs.read_uint(d, "memory.current") if os.path.exists(os.path.join(d, "memory.current")) else 0
            for setting, value in (("memory.limit", m.limit), ("memory.swap", m.swap)):
                if value is not None and 0 < value <= usage:
                    raise SystemFailure(f"{setting} = {value} rejected: current usage is {usage} ({d})", errno.EBUSY)
        writes = []
        if swap is not None:
            # without swap accounting the file is missing: "max" and "0" then already hold
            if swap not in (-1, 0) or os.path.exists(os.path.join(d, "memory.swap.max")):
                writes.append(fs.Write(d, "memory.swap.max", max_or_number(swap)))
        if m.limit is not None:
            writes.append(fs.Write(d, "memory.max", max_or_number(m.limit)))
        if m.reservation is not None:
            writes.append(fs.Write(d, "memory.low", max_or_number(m.reservation)))
        return writes

    def _plan_cpu(self, res: Resources) -> list[fs.Write]:
        from dockyard.cgroups.resources import cpu_shares_to_weight, max_or_number

        c = res.cpu
        assert c is not None
        d = self.dir
        if c.realtime_runtime is not None or c.realtime_period is not None:
            raise NotImplementedFeature("cpu.realtimeRuntime/realtimePeriod on cgroup v2")
        writes = []
        if c.idle is not None:
            writes.append(fs.Write(d, "cpu.idle", str(c.idle)))
        if c.shares is not None:
            writes.append(fs.Write(d, "cpu.weight", str(cpu_shares_to_weight(c.shares))))
        if c.burst is not None:
            writes.append(fs.Write(d, "cpu.max.burst", str(c.burst), retry_on_einval=c.quota is not None))
        if c.quota is not None or c.period is not None:
            quota = max_or_number(c.quota) if c.quota is not None else self._current_quota()
            writes.append(fs.Write(d, "cpu.max", f"{quota} {c.period or 100000}"))
        if c.cpus is not None:
            writes.append(fs.Write(d, "cpuset.cpus", c.cpus))
        if c.mems is not None:
            writes.append(fs.Write(d, "cpuset.mems", c.mems))
        return writes

    def _current_quota(self) -> str:
        """A period-only update keeps the quota (runc would reset it to max)."""
        current = fs.read_optional(self.dir, "cpu.max")
        return current.split()[0] if current else "max"

    def _plan_io(self, res: Resources) -> list[fs.Write]:
        from dockyard.cgroups.resources import blkio_weight_to_io_weight

        b = res.block_io
        assert b is not None
        d = self.dir
        if b.leaf_weight is not None or any(wd.leaf_weight is not None for wd in b.weight_devices):
            raise NotImplementedFeature("blockIO leaf weights on cgroup v2")
        bfq = fs.read_optional(d, "io.bfq.weight")
        writes = []
        if b.weight is not None:
            if bfq is not None:
                writes.append(fs.Write(d, "io.bfq.weight", str(b.weight)))
            else:
                writes.append(fs.Write(d, "io.weight", str(blkio_weight_to_io_weight(b.weight))))
        # io.bfq.weight takes per-device weights on kernels that print it as "default N"
        bfq_devices = bfq is not None and not bfq.strip().isdigit()
        for wd in b.weight_devices:
            if wd.weight is None:
                continue
            if bfq_devices:
                writes.append(fs.Write(d, "io.bfq.weight", f"{wd.major}:{wd.minor} {wd.weight}"))
            else:
                writes.append(fs.Write(d, "io.weight", f"{wd.major}:{wd.minor} {blkio_weight_to_io_weight(wd.weight)}"))
        for _, key, rules in b.throttles():
            # v1 removes a throttle written as 0; v2 says "max" for that
            writes += [fs.Write(d, "io.max", f"{t.major}:{t.minor} {key}={t.rate or 'max'}") for t in rules]
        return writes

    # --- freezer ---

    def freeze(self) -> None:
        """Write cgroup.freeze, then wait for cgroup.events to report every task frozen."""
        if not os.path.exists(os.path.join(self.dir, "cgroup.freeze")):
            raise NotImplementedFeature("freezing a cgroup v2 on a kernel without cgroup.freeze (before 5.2)")
        fs.write(self.dir, "cgroup.freeze", "1")
        deadline = time.monotonic() + _FREEZE_TIMEOUT
        while fs.read_keyed(self.dir, "cgroup.events").get("frozen") != 1:
            if time.monotonic() > deadline:
                raise SystemFailure(f"{self.dir}: cgroup.events did not report frozen 1", errno.ETIMEDOUT)
            time.sleep(0.001)

    def thaw(self) -> None:
        if os.path.exists(os.path.join(self.dir, "cgroup.freeze")):
            fs.write(self.dir, "cgroup.freeze", "0")

    def is_frozen(self) -> bool:
        state = fs.read_optional(self.dir, "cgroup.freeze")
        return state is not None and state.strip() == "1"

    # --- processes and figures ---

    def pids(self) -> list[int]:
        return fs.all_procs(self.dir)

    def _kill_file_dir(self) -> str | None:
        return self.dir

    def stats(self) -> dict[str, Any]:
        from dockyard.cgroups import stats

        return stats.v2(self.dir)

    def oom_kill_count(self) -> int:
        """From memory.events; 0 where the memory controller is not enabled."""
        events = fs.read_optional(self.dir, "memory.events")
        if events is None:
            return 0
        return fs.parse_keyed(events, os.path.join(self.dir, "memory.events")).get("oom_kill", 0)

    def mounts(self) -> list[tuple[str, str]]:
        return [("", self.dir)]

    # --- persistence ---

    def to_dict(self) -> dict[str, Any]:
        return {"version": 2, "path": self.path, "root": self.root, "dir": self.dir}

    @classmethod
    def _load(cls, d: dict[str, Any]) -> V2Manager:
        try:
            return cls(d["path"], d["root"], d["dir"])
        except KeyError as e:
            raise InvalidArgument(f"saved cgroup v2 state lacks {e}") from None
