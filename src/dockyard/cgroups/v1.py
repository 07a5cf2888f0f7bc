"""cgroup v1: one directory per mounted hierarchy (co-mounted controllers share one).

On a hybrid host the container also gets a directory in the v2 hierarchy (as runc does):
it holds no limits, but gives systemd inside the container its unified view and gives
``kill_all(SIGKILL)`` the kernel's race-free ``cgroup.kill``.
"""

from __future__ import annotations

import errno
import os
import time

from dockyard.cgroups import fs, paths
from dockyard.cgroups.base import CgroupManager
from dockyard.cgroups.paths import Hierarchy
from dockyard.errors import InvalidArgument, InvalidSpec, NotImplementedFeature, SystemFailure

# On the runtime's hot path (create, state, kill, delete) only the modules above load;
# resources, devices and stats are imported by the methods that need them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dockyard.cgroups.devices import Emulator
    from dockyard.cgroups.resources import Resources

# the hierarchy whose cgroup.procs answers pids(), in order of preference (runc uses devices)
_PIDS_FROM = ("devices", "freezer", "pids", "memory", "cpu", "cpuacct", "cpuset", "blkio", "name=systemd")
_FREEZE_TRIES = 1000
_SETTINGS = {  # control file -> the OCI setting it carries, for error messages
    "memory.limit_in_bytes": "memory.limit", "memory.memsw.limit_in_bytes": "memory.swap",
    "memory.soft_limit_in_bytes": "memory.reservation", "memory.oom_control": "memory.disableOOMKiller",
    "memory.swappiness": "memory.swappiness", "memory.use_hierarchy": "memory.useHierarchy",
    "cpu.shares": "cpu.shares", "cpu.cfs_quota_us": "cpu.quota", "cpu.cfs_period_us": "cpu.period",
    "cpu.cfs_burst_us": "cpu.burst", "cpu.rt_runtime_us": "cpu.realtimeRuntime",
    "cpu.rt_period_us": "cpu.realtimePeriod", "cpu.idle": "cpu.idle", "pids.max": "pids.limit",
    "blkio.leaf_weight": "blockIO.leafWeight", "blkio.leaf_weight_device": "blockIO.weightDevice.leafWeight",
    "net_cls.classid": "network.classID", "net_prio.ifpriomap": "network.priorities",
}


class V1Manager(CgroupManager):
    version = 1

    def __init__(self, path: str, placed: list[tuple[Hierarchy, str]]) -> None:
        """`placed`: each hierarchy with the container's directory in it."""
        self.path = path
        self._placed = placed
        self._dirs: dict[str, str] = {}
        for h, d in placed:
            for c in h.controllers or (paths.UNIFIED,):
                self._dirs[c] = d

    @classmethod
    def open(cls, path: str, root: str = paths.DEFAULT_ROOT, own: dict[str, str] | None = None) -> V1Manager:
        """Place normalised `path` in every hierarchy under `root` (`own`: our /proc/self/cgroup)."""
        hierarchies = paths.discover_v1(root)
        if own is None and not path.startswith("/"):
            own = paths.current_cgroup_paths()
        return cls(path, [(h, paths.v1_dir(h, path, own or {})) for h in hierarchies])

    def dir(self, controller: str) -> str | None:
        """The container's directory for a controller ("memory", "name=systemd", "" for hybrid v2)."""
        return self._dirs.get(controller)

    # --- lifecycle ---

    def create(self) -> None:
        for h, d in self._placed:
            try:
                if "cpuset" in h.controllers:
                    self._create_cpuset(h.mountpoint, d)
                else:
                    _mkdir(d)
            except OSError as e:
                raise SystemFailure(f"creating cgroup {d}: {e.strerror}", e.errno or 0) from None

    @staticmethod
    def _create_cpuset(top: str, d: str) -> None:
        """mkdir each level, filling empty cpus/mems from the parent: an empty cpuset refuses tasks.

        Each file is read at most once: a level we create is known to need its parent's values
        (writing them is harmless where cgroup.clone_children already copied them), and those
        values are carried down rather than read again.
        """
        prefix = "cpuset." if os.path.exists(os.path.join(top, "cpuset.cpus")) else ""
        names = (f"{prefix}cpus", f"{prefix}mems")
        parent, inherited = top, None
        for part in os.path.relpath(d, top).split("/"):
            current = os.path.join(parent, part)
            created = _mkdir(current)
            values = []
            for i, name in enumerate(names):
                value = "" if created else fs.read(current, name).strip()
                if not value:
                    if inherited is None:
                        inherited = [fs.read(parent, n).strip() for n in names]
                    value = inherited[i]
                    fs.write(current, name, value)
                values.append(value)
            parent, inherited = current, values

    def add_process(self, pid: int) -> None:
        for _, d in self._placed:
            fs.write_pid(d, pid)

    def v2_dir(self) -> str | None:
        return self._dirs.get(paths.UNIFIED)

    def join_self(self) -> None:
        """Write 0 to each v1 hierarchy's `tasks`: moving one thread (the caller's only one) skips
        the kernel's global threadgroup lock that a `cgroup.procs` write takes, whose first use
        waits for an RCU grace period (~11 ms here, against ~0.3 ms for this). The hybrid v2
        directory has no `tasks`: fork() had the child born there."""
        for h, d in self._placed:
            if h.controllers:
                fs.write(d, fs.TASKS_FILE, "0")
            elif not self._born_inside:
                fs.write_pid(d, os.getpid())

    def destroy(self) -> None:
        failures = []
        for _, d in self._placed:
            try:
                fs.remove_tree(d)
            except SystemFailure as e:
                failures.append(str(e))
        if failures:
            raise SystemFailure("; ".join(failures), errno.EBUSY)

    # --- resources ---

    def set(self, resources: dict[str, Any]) -> None:
        from dockyard.cgroups.devices import Emulator
        from dockyard.cgroups.resources import parse_resources

        res = parse_resources(resources)
        writes = self.plan(res)
        fs.check_targets(writes, _SETTINGS)
        try:
            fs.apply_writes(writes)
        except SystemFailure as e:
            raise self._explain(e) from None
        if res.devices is not None:
            self._verify_devices(Emulator.from_rules(res.devices))

    def _need(self, controller: str, setting: str) -> str:
        d = self._dirs.get(controller)
        if d is None:
            raise SystemFailure(f"{setting} needs the {controller} cgroup controller, which is not mounted", errno.ENOENT)
        return d

    def plan(self, res: Resources) -> list[fs.Write]:
        """The writes for `res`, in the order the kernel accepts them; reads current values only.

        Raises InvalidSpec/SystemFailure for anything it cannot do, before any write.
        """
        if res.unified:
            raise InvalidSpec("linux.resources.unified needs cgroup v2; this host uses cgroup v1")
        writes: list[fs.Write] = []
        if res.memory is not None:
            writes += self._plan_memory(res)
        if res.cpu is not None:
            writes += self._plan_cpu(res)
        if res.pids_limit is not None:
            from dockyard.cgroups.resources import pids_value

            writes.append(fs.Write(self._need("pids", "pids.limit"), "pids.max", pids_value(res.pids_limit)))
        if res.block_io is not None:
            writes += self._plan_blkio(res)
        for hp in res.hugepage_limits:
            d = self._need("hugetlb", "hugepageLimits")
            writes.append(fs.Write(d, f"hugetlb.{hp.page_size}.limit_in_bytes", str(hp.limit)))
            if os.path.exists(os.path.join(d, f"hugetlb.{hp.page_size}.rsvd.limit_in_bytes")):
                writes.append(fs.Write(d, f"hugetlb.{hp.page_size}.rsvd.limit_in_bytes", str(hp.limit)))
        if res.network is not None:
            if res.network.class_id is not None:
                d = self._need("net_cls", "network.classID")
                writes.append(fs.Write(d, "net_cls.classid", str(res.network.class_id)))
            for name, prio in res.network.priorities:
                writes.append(fs.Write(self._need("net_prio", "network.priorities"), "net_prio.ifpriomap", f"{name} {prio}"))
        if res.devices is not None:
            writes += self._plan_devices(res)
        return writes

    def _plan_memory(self, res: Resources) -> list[fs.Write]:
        m = res.memory
        assert m is not None
        d = self._need("memory", "memory")
        has_swap = os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes"))
        limit, swap = m.limit, m.swap
        if limit == -1 and swap is None and has_swap:
            swap = -1  # unlimited memory with swap unspecified: both unlimited (runc)
        if swap is not None and not has_swap:
            raise SystemFailure(
                f"memory.swap: the kernel has no swap accounting ({d}/memory.memsw.limit_in_bytes is missing)", errno.ENOENT
            )
        if limit == -1 and swap is not None and swap != -1:
            raise InvalidSpec(f"linux.resources.memory.swap = {swap} with an unlimited memory.limit: v1 needs memory+swap >= memory")
        if m.check_before_update:
            self._check_usage(d, "memory.usage_in_bytes", limit, "memory.limit")
            self._check_usage(d, "memory.memsw.usage_in_bytes", swap, "memory.swap")
        writes = []
        if limit is not None:
            writes.append(fs.Write(d, "memory.limit_in_bytes", str(limit)))
        if swap is not None:
            writes.append(fs.Write(d, "memory.memsw.limit_in_bytes", str(swap)))
            # memory+swap may never be below memory: when raising, swap goes first (runc's test)
            if limit is not None and (swap == -1 or fs.read_uint(d, "memory.limit_in_bytes") < swap):
                writes.reverse()
        if m.reservation is not None:
            writes.append(fs.Write(d, "memory.soft_limit_in_bytes", str(m.reservation)))
        if m.disable_oom_killer is not None:
            writes.append(fs.Write(d, "memory.oom_control", "1" if m.disable_oom_killer else "0"))
        if m.swappiness is not None:
            writes.append(fs.Write(d, "memory.swappiness", str(m.swappiness)))
        if m.use_hierarchy is not None:
            writes.append(fs.Write(d, "memory.use_hierarchy", "1" if m.use_hierarchy else "0"))
        return writes

    @staticmethod
    def _check_usage(d: str, usage_file: str, limit: int | None, setting: str) -> None:
        if limit is None or limit <= 0 or not os.path.exists(os.path.join(d, usage_file)):
            return
        usage = fs.read_uint(d, usage_file)
        if limit <= usage:
            raise SystemFailure(f"{setting} = {limit} rejected: current usage is {usage} ({d})", errno.EBUSY)

    def _plan_cpu(self, res: Resources) -> list[fs.Write]:
        c = res.cpu
        assert c is not None
        writes = []
        if any(v is not None for v in (c.shares, c.period, c.quota, c.burst, c.idle, c.realtime_period, c.realtime_runtime)):
            d = self._need("cpu", "cpu")
            if c.shares is not None:
                writes.append(fs.Write(d, "cpu.shares", str(c.shares)))
            if c.period is not None:
                writes.append(fs.Write(d, "cpu.cfs_period_us", str(c.period), retry_on_einval=c.quota is not None))
            if c.burst is not None:
                writes.append(fs.Write(d, "cpu.cfs_burst_us", str(c.burst), retry_on_einval=c.quota is not None))
            if c.quota is not None:
                writes.append(fs.Write(d, "cpu.cfs_quota_us", str(c.quota)))
            if c.idle is not None:
                writes.append(fs.Write(d, "cpu.idle", str(c.idle)))
            if c.realtime_period is not None:
                writes.append(fs.Write(d, "cpu.rt_period_us", str(c.realtime_period),
                                       retry_on_einval=c.realtime_runtime is not None))
            if c.realtime_runtime is not None:
                writes.append(fs.Write(d, "cpu.rt_runtime_us", str(c.realtime_runtime)))
        if c.cpus is not None or c.mems is not None:
            d = self._need("cpuset", "cpu.cpus/cpu.mems")
            prefix = "cpuset." if os.path.exists(os.path.join(d, "cpuset.cpus")) else ""
            if c.cpus is not None:
                writes.append(fs.Write(d, f"{prefix}cpus", c.cpus))
            if c.mems is not None:
                writes.append(fs.Write(d, f"{prefix}mems", c.mems))
        return writes

    def _plan_blkio(self, res: Resources) -> list[fs.Write]:
        b = res.block_io
        assert b is not None
        d = self._need("blkio", "blockIO")
        bfq = not os.path.exists(os.path.join(d, "blkio.weight"))
        weight_file = "blkio.bfq.weight" if bfq else "blkio.weight"
        weight_device_file = "blkio.bfq.weight_device" if bfq else "blkio.weight_device"
        writes = []
        if b.weight is not None:
            writes.append(fs.Write(d, weight_file, str(b.weight)))
        if b.leaf_weight is not None:
            writes.append(fs.Write(d, "blkio.leaf_weight", str(b.leaf_weight)))
        for wd in b.weight_devices:
            if wd.weight is not None:
                writes.append(fs.Write(d, weight_device_file, f"{wd.major}:{wd.minor} {wd.weight}"))
            if wd.leaf_weight is not None:
                writes.append(fs.Write(d, "blkio.leaf_weight_device", f"{wd.major}:{wd.minor} {wd.leaf_weight}"))
        for name, _, rules in b.throttles():
            writes += [fs.Write(d, name, f"{t.major}:{t.minor} {t.rate}") for t in rules]
        return writes

    def _plan_devices(self, res: Resources) -> list[fs.Write]:
        from dockyard.cgroups.devices import Emulator

        assert res.devices is not None
        d = self._need("devices", "devices")
        current = Emulator.from_list(fs.read(d, "devices.list"), os.path.join(d, "devices.list"))
        target = Emulator.from_rules(res.devices)
        return [
            fs.Write(d, "devices.allow" if rule.allow else "devices.deny", rule.cgroup_string())
            for rule in current.transition(target)
        ]

    def _verify_devices(self, target: Emulator) -> None:
        """runc's final check: the kernel's view must match (exactly, for an allow-list)."""
        from dockyard.cgroups.devices import Emulator

        d = self._dirs["devices"]
        after = Emulator.from_list(fs.read(d, "devices.list"))
        if after.default_allow != target.default_allow or (not target.default_allow and after.rules != target.rules):
            raise SystemFailure(f"{d}/devices.list does not match the requested device rules after writing them")

    def _explain(self, e: SystemFailure) -> SystemFailure:
        """Add the current usage to EBUSY from a memory limit below it."""
        d = self._dirs.get("memory")
        if e.errno == errno.EBUSY and d is not None and "memory.limit_in_bytes" in str(e):
            usage = fs.read_optional(d, "memory.usage_in_bytes")
            peak = fs.read_optional(d, "memory.max_usage_in_bytes")
            return SystemFailure(f"{e} (current usage {str(usage).strip()}, peak {str(peak).strip()})", e.errno)
        return e

    # --- freezer ---

    def _freezer(self) -> str:
        d = self._dirs.get("freezer")
        if d is None:
            raise NotImplementedFeature("freeze without a mounted freezer cgroup hierarchy")
        return d

    def freeze(self) -> None:
        """Write FROZEN until the kernel says FROZEN: new forks can keep v1 in FREEZING (runc's loop)."""
        d = self._freezer()
        for i in range(_FREEZE_TRIES):
            if i % 50 == 49:  # a short thaw lets a fork storm settle
                fs.write(d, "freezer.state", "THAWED")
                time.sleep(0.01)
            fs.write(d, "freezer.state", "FROZEN")
            if i % 25 == 24:
                time.sleep(0.00001)
            state = fs.read(d, "freezer.state").strip()
            if state == "FROZEN":
                return
            if state != "FREEZING":
                raise SystemFailure(f"unexpected {d}/freezer.state {state!r} while freezing")
        fs.write(d, "freezer.state", "THAWED")
        raise SystemFailure(f"could not freeze {d}: it stayed FREEZING", errno.EBUSY)

    def thaw(self) -> None:
        fs.write(self._freezer(), "freezer.state", "THAWED")

    def is_frozen(self) -> bool:
        """Frozen by us, read from one file: freezer.self_freezing, the state this cgroup was asked for.

        Like v2's cgroup.freeze, it is the request rather than the kernel's progress: freeze()
        returns only once freezer.state says FROZEN, and a cgroup frozen only through a frozen
        parent does not count. Kernels without self_freezing (before 3.10) fall back to
        freezer.state.
        """
        d = self._dirs.get("freezer")
        if d is None:
            return False
        own = fs.read_optional(d, "freezer.self_freezing")
        if own is not None:
            return own.strip() == "1"
        deadline = time.monotonic() + 5
        while True:
            state = fs.read(d, "freezer.state").strip()
            if state in ("THAWED", "FROZEN"):
                return state == "FROZEN"
            if time.monotonic() > deadline:
                raise SystemFailure(f"{d}/freezer.state stayed {state!r}")
            time.sleep(0.001)

    # --- processes and figures ---

    def pids(self) -> list[int]:
        for controller in _PIDS_FROM:
            if controller in self._dirs:
                return fs.all_procs(self._dirs[controller])
        return fs.all_procs(self._placed[0][1])

    def _kill_file_dir(self) -> str | None:
        return self._dirs.get(paths.UNIFIED)

    def stats(self) -> dict[str, Any]:
        from dockyard.cgroups import stats

        return stats.v1(self._dirs)

    def oom_kill_count(self) -> int:
        """From memory.oom_control (kernel 4.13+); 0 without a memory hierarchy."""
        d = self._dirs.get("memory")
        if d is None:
            return 0
        return fs.read_keyed(d, "memory.oom_control").get("oom_kill", 0)

    def mounts(self) -> list[tuple[str, str]]:
        return [(h.name, d) for h, d in self._placed]

    # --- persistence ---

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "path": self.path,
            "hierarchies": [
                {"controllers": list(h.controllers), "mountpoint": h.mountpoint, "root": h.root, "dir": d}
                for h, d in self._placed
            ],
        }

    @classmethod
    def _load(cls, d: dict[str, Any]) -> V1Manager:
        try:
            placed = [
                (Hierarchy(tuple(e["controllers"]), e["mountpoint"], e["root"]), e["dir"]) for e in d["hierarchies"]
            ]
            return cls(d["path"], placed)
        except (KeyError, TypeError) as e:
            raise InvalidArgument(f"saved cgroup v1 state is malformed: {e!r}") from None


def _mkdir(d: str) -> bool:
    """Make directory `d` and any missing parents; whether `d` itself was made (False: it existed).

    One mkdir(2) in the usual case (the parent exists), where os.makedirs stats first.
    """
    try:
        os.mkdir(d)
        return True
    except FileExistsError:
        if not os.path.isdir(d):
            raise
        return False
    except FileNotFoundError:
        os.makedirs(os.path.dirname(d), exist_ok=True)
    try:
        os.mkdir(d)
    except FileExistsError:  # made meanwhile by someone else
        if not os.path.isdir(d):
            raise
        return False
    return True
