"""The cgroup managers against the real kernel, with real processes in the cgroups.

v1 tests need a v1 (or hybrid) host. The v2 manager runs on a cgroup2 mount: the whole of
/sys/fs/cgroup on a pure v2 host, or the hybrid /sys/fs/cgroup/unified, which has no resource
controllers but does freeze, kill and run device filters.
"""

from __future__ import annotations

import errno
import os
import resource
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from dockyard.cgroups import CgroupManager, V1Manager, V2Manager, ebpf, fs, manager_from_dict, new_manager, paths
from dockyard.errors import DockyardError, SystemFailure

pytestmark = pytest.mark.root

Spawn = Callable[..., subprocess.Popen[str]]

TICKER = "import time\nwhile True:\n    print('t', flush=True)\n    time.sleep(0.01)\n"
TRY_DEVICES = """
for dev in ("/dev/null", "/dev/zero"):
    try:
        open(dev, "rb").close()
        print(dev, "ok")
    except OSError as e:
        print(dev, e.errno)
"""
FORK_UNTIL_REFUSED = """
import os, time
kids = []
for _ in range(20):
    try:
        pid = os.fork()
    except OSError as e:
        print("refused", len(kids), e.errno, flush=True)
        break
    if pid == 0:
        time.sleep(10)
        os._exit(0)
    kids.append(pid)
for kid in kids:
    os.kill(kid, 9)
    os.waitpid(kid, 0)
"""
ALLOCATE = "chunks = []\nfor _ in range(200):\n    chunks.append(bytearray(1 << 20))\nprint('survived')\n"


def _unique(prefix: str = "/dockyard-test") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _cleanup(cg: CgroupManager, children: list[subprocess.Popen[str]]) -> None:
    try:
        cg.kill_all(signal.SIGKILL)
    except DockyardError:
        pass
    for child in children:
        child.kill()
        child.wait(timeout=10)
        for stream in (child.stdout, child.stdin):
            if stream is not None:
                stream.close()
    cg.destroy()


def _spawner(cg: CgroupManager, children: list[subprocess.Popen[str]]) -> Spawn:
    def spawn(*argv: str, stdin: int | None = None) -> subprocess.Popen[str]:
        # joins in the child before exec, so the program never runs outside the cgroup
        child = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stdin=stdin, text=True,
                                 preexec_fn=lambda: cg.add_process(os.getpid()))
        children.append(child)
        return child

    return spawn


def _ticks(child: subprocess.Popen[str], seconds: float) -> int:
    """Lines the child printed within `seconds`."""
    assert child.stdout is not None
    fd = child.stdout.fileno()
    deadline = time.monotonic() + seconds
    count = 0
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            data = os.read(fd, 65536)
            if not data:
                break
            count += data.count(b"\n")
    return count


def _python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


# --- cgroup v1 ---


@pytest.fixture
def v1() -> Iterator[tuple[V1Manager, Spawn]]:
    if paths.is_unified():
        pytest.skip("needs a cgroup v1 host")
    cg = new_manager(_unique(), "unused")
    assert isinstance(cg, V1Manager)
    children: list[subprocess.Popen[str]] = []
    cg.create()
    try:
        yield cg, _spawner(cg, children)
    finally:
        _cleanup(cg, children)


def test_v1_limits_are_written_and_read_back(v1: tuple[V1Manager, Spawn]) -> None:
    cg, _ = v1
    cg.set({
        "memory": {"limit": 64 << 20, "swap": 96 << 20, "reservation": 32 << 20},
        "pids": {"limit": 20},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
    })

    def read(controller: str, name: str) -> str:
        d = cg.dir(controller)
        assert d is not None
        return fs.read(d, name).strip()

    assert read("memory", "memory.limit_in_bytes") == str(64 << 20)
    assert read("memory", "memory.memsw.limit_in_bytes") == str(96 << 20)
    assert read("memory", "memory.soft_limit_in_bytes") == str(32 << 20)
    assert read("pids", "pids.max") == "20"
    assert (read("cpu", "cpu.shares"), read("cpu", "cpu.cfs_quota_us")) == ("512", "50000")
    assert read("cpuset", "cpuset.cpus") == "0"
    stats = cg.stats()
    assert stats["memory"]["usage"]["limit"] == 64 << 20 and stats["pids"]["limit"] == 20
    # lower both again: the order flips (memory first) and the kernel accepts it
    cg.set({"memory": {"limit": 32 << 20, "swap": 48 << 20}})
    assert read("memory", "memory.memsw.limit_in_bytes") == str(48 << 20)


def test_v1_process_is_in_every_hierarchy(v1: tuple[V1Manager, Spawn]) -> None:
    cg, spawn = v1
    child = spawn("sleep", "30")
    placed = paths.current_cgroup_paths(child.pid)
    for controller in ("memory", "cpu", "cpuacct", "pids", "devices", "freezer", "name=systemd"):
        assert placed[controller] == cg.path, controller
    if cg.dir(paths.UNIFIED):
        assert placed[paths.UNIFIED] == cg.path
    assert cg.pids() == [child.pid]
    assert manager_from_dict(cg.to_dict()).pids() == [child.pid]


def _fork_and_join(cg: CgroupManager) -> dict[str, str]:
    """fork() + join_self() in the child, as the runtime's stage-1 does; the child's placement."""
    r, w = os.pipe()
    pid = cg.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            cg.join_self()
            os.write(w, repr((cg._born_inside, paths.current_cgroup_paths())).encode())
        except BaseException as e:  # noqa: BLE001 - report to the parent, never return into pytest
            os.write(w, repr(("error", str(e))).encode())
            code = 1
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        born_inside, placed = eval(f.read().decode())  # noqa: S307 - our own child's repr
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, placed
    assert born_inside == (cg.v2_dir() is not None)
    return placed


def test_v1_fork_then_join_self_places_the_child_everywhere(v1: tuple[V1Manager, Spawn]) -> None:
    cg, _ = v1
    placed = _fork_and_join(cg)
    for controller in ("memory", "cpu", "cpuacct", "pids", "devices", "freezer", "name=systemd"):
        assert placed[controller] == cg.path, controller
    if cg.dir(paths.UNIFIED):
        assert placed[paths.UNIFIED] == cg.path  # born there (clone3 CLONE_INTO_CGROUP)
    assert paths.current_cgroup_paths()["memory"] != cg.path  # the parent stays where it was


def test_v1_nested_path_fills_each_cpuset_level() -> None:
    if paths.is_unified():
        pytest.skip("needs a cgroup v1 host")
    top = _unique()
    cg = new_manager(f"{top}/middle/leaf", "unused")
    assert isinstance(cg, V1Manager)
    children: list[subprocess.Popen[str]] = []
    try:
        cg.create()
        spawn = _spawner(cg, children)
        child = spawn("sleep", "30")  # joining an empty cpuset would fail with ENOSPC
        assert cg.pids() == [child.pid]
    finally:
        _cleanup(cg, children)
        for _, d in cg.mounts():
            fs.remove_tree(d[: d.index(top) + len(top)])


def test_v1_freeze_stops_and_thaw_resumes(v1: tuple[V1Manager, Spawn]) -> None:
    cg, spawn = v1
    child = spawn(*_python(TICKER))
    assert _ticks(child, 0.3) > 0
    cg.freeze()
    assert cg.is_frozen()
    _ticks(child, 0.05)  # what was already in the pipe
    assert _ticks(child, 0.2) == 0
    cg.thaw()
    assert not cg.is_frozen()
    assert _ticks(child, 0.3) > 0


def test_v1_stats_see_cpu_and_memory(v1: tuple[V1Manager, Spawn]) -> None:
    cg, spawn = v1
    child = spawn(*_python("b = bytearray(24 << 20)\nx = 0\nfor i in range(2_000_000): x += i\nprint('done', flush=True)\n"
                           "import time; time.sleep(30)"), )
    assert child.stdout is not None and child.stdout.readline() == "done\n"
    s = cg.stats()
    assert s["cpu"]["usage"]["total"] > 10_000_000  # > 10 ms of CPU
    assert len(s["cpu"]["usage"]["percpu"]) == os.cpu_count()
    assert s["memory"]["usage"]["usage"] >= 24 << 20
    assert s["memory"]["raw"]["rss"] >= 24 << 20 or s["memory"]["raw"].get("total_rss", 0) >= 24 << 20
    assert s["pids"]["current"] == 1


def test_v1_kill_all_reaches_every_descendant(v1: tuple[V1Manager, Spawn]) -> None:
    cg, spawn = v1
    shell = spawn("sh", "-c", "sleep 30 & sleep 30 & echo up; wait")
    assert shell.stdout is not None and shell.stdout.readline() == "up\n"
    assert len(cg.pids()) == 3
    cg.kill_all(signal.SIGTERM)  # the freeze / signal / thaw path
    assert shell.wait(timeout=5) == -signal.SIGTERM
    _wait_empty(cg)
    assert not cg.is_frozen()
    shell = spawn("sh", "-c", "sleep 30 & sleep 30 & echo up; wait")
    assert shell.stdout is not None and shell.stdout.readline() == "up\n"
    cg.kill_all(signal.SIGKILL)
    assert shell.wait(timeout=5) == -signal.SIGKILL
    _wait_empty(cg)


def test_v1_kill_all_thaws_a_frozen_cgroup_for_sigkill(v1: tuple[V1Manager, Spawn]) -> None:
    cg, spawn = v1
    child = spawn("sleep", "30")
    cg.freeze()
    cg.kill_all(signal.SIGKILL)
    assert child.wait(timeout=5) == -signal.SIGKILL
    assert not cg.is_frozen()


def _wait_empty(cg: CgroupManager) -> None:
    deadline = time.monotonic() + 5
    while cg.pids():
        assert time.monotonic() < deadline, f"still in the cgroup: {cg.pids()}"
        time.sleep(0.01)


def test_v1_pids_limit_is_enforced(v1: tuple[V1Manager, Spawn]) -> None:
    cg, spawn = v1
    cg.set({"pids": {"limit": 5}})
    child = spawn(*_python(FORK_UNTIL_REFUSED))
    out, _ = child.communicate(timeout=20)
    assert out.split() == ["refused", "4", str(errno.EAGAIN)]  # python + 4 children = 5


def test_v1_memory_limit_oom_kills(v1: tuple[V1Manager, Spawn]) -> None:
    cg, spawn = v1
    cg.set({"memory": {"limit": 32 << 20, "swap": 32 << 20}})
    child = spawn(*_python(ALLOCATE))
    out, _ = child.communicate(timeout=20)
    assert child.returncode == -signal.SIGKILL and "survived" not in out
    assert cg.oom_kill_count() >= 1
    assert cg.stats()["memory"]["usage"]["max"] == 32 << 20  # the peak reached the limit


def test_v1_memory_below_usage_is_refused_with_context(v1: tuple[V1Manager, Spawn]) -> None:
    cg, spawn = v1
    cg.set({"memory": {"limit": 128 << 20, "swap": 128 << 20}})
    child = spawn(*_python("b = bytearray(48 << 20)\nprint('held', flush=True)\nimport time; time.sleep(30)"))
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    with pytest.raises(SystemFailure) as info:
        cg.set({"memory": {"limit": 8 << 20, "swap": 8 << 20}})
    assert info.value.errno == errno.EBUSY
    assert "memory.limit_in_bytes" in str(info.value) and str(8 << 20) in str(info.value)
    assert "current usage" in str(info.value)


def test_v1_device_rules_are_enforced(v1: tuple[V1Manager, Spawn]) -> None:
    cg, spawn = v1
    cg.set({"devices": [{"allow": False, "access": "rwm"},
                        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})
    d = cg.dir("devices")
    assert d is not None and fs.read(d, "devices.list") == "c 1:3 rwm\n"
    out, _ = spawn(*_python(TRY_DEVICES)).communicate(timeout=10)
    assert out.splitlines() == ["/dev/null ok", f"/dev/zero {errno.EPERM}"]
    cg.set({"devices": [{"allow": True, "access": "rwm"}]})
    assert fs.read(d, "devices.list") == "a *:* rwm\n"


def test_v1_destroy_removes_everything_and_is_idempotent() -> None:
    if paths.is_unified():
        pytest.skip("needs a cgroup v1 host")
    cg = new_manager(_unique(), "unused")
    cg.create()
    dirs = [d for _, d in cg.mounts()]
    assert all(os.path.isdir(d) for d in dirs)
    os.mkdir(os.path.join(dirs[0], "sub"))  # a sub-cgroup the container made
    cg.destroy()
    assert not any(os.path.exists(d) for d in dirs)
    cg.destroy()


# --- cgroup v2 ---


def _v2_root() -> str:
    for root in (paths.DEFAULT_ROOT, os.path.join(paths.DEFAULT_ROOT, "unified")):
        if paths.is_unified(root):
            return root
    pytest.skip("no cgroup2 mount")


@pytest.fixture
def v2() -> Iterator[tuple[V2Manager, Spawn]]:
    cg = new_manager(_unique(), "unused", root=_v2_root())
    assert isinstance(cg, V2Manager)
    children: list[subprocess.Popen[str]] = []
    cg.create()
    try:
        yield cg, _spawner(cg, children)
    finally:
        _cleanup(cg, children)


def test_v2_process_joins_and_freezes(v2: tuple[V2Manager, Spawn]) -> None:
    cg, spawn = v2
    child = spawn(*_python(TICKER))
    assert cg.pids() == [child.pid]
    assert _ticks(child, 0.3) > 0
    cg.freeze()
    assert cg.is_frozen()
    _ticks(child, 0.05)
    assert _ticks(child, 0.2) == 0
    cg.thaw()
    assert not cg.is_frozen() and _ticks(child, 0.3) > 0
    assert cg.stats()["pids"]["current"] == 1


def test_v2_fork_is_born_in_the_cgroup(v2: tuple[V2Manager, Spawn]) -> None:
    cg, _ = v2
    assert _fork_and_join(cg)[paths.UNIFIED] == cg.path


def test_v2_kill_all_uses_cgroup_kill(v2: tuple[V2Manager, Spawn]) -> None:
    cg, spawn = v2
    shell = spawn("sh", "-c", "sleep 30 & sleep 30 & echo up; wait")
    assert shell.stdout is not None and shell.stdout.readline() == "up\n"
    cg.kill_all(signal.SIGKILL)
    assert shell.wait(timeout=5) == -signal.SIGKILL
    _wait_empty(cg)


def test_v2_device_filter_is_enforced_and_replaced(v2: tuple[V2Manager, Spawn]) -> None:
    cg, spawn = v2
    rules = [{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}]
    memlock = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    cg.set({"devices": rules})
    assert resource.getrlimit(resource.RLIMIT_MEMLOCK) == memlock  # nothing for the container to inherit
    cg.set({"devices": rules})  # an update replaces the program rather than stacking another
    fd = os.open(cg.dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        attached = ebpf.attached_programs(fd)
        assert len(attached) == 1
        for prog in attached:
            os.close(prog)
    finally:
        os.close(fd)
    out, _ = spawn(*_python(TRY_DEVICES)).communicate(timeout=10)
    assert out.splitlines() == ["/dev/null ok", f"/dev/zero {errno.EPERM}"]


def test_rejected_program_reports_the_verifier_log() -> None:
    _v2_root()
    with pytest.raises(SystemFailure, match="verifier: .*R0"):
        ebpf.load(ebpf.insn(0x95))  # exit without setting r0


def test_v2_pids_limit_where_the_controller_is_available(v2: tuple[V2Manager, Spawn]) -> None:
    cg, spawn = v2
    if "pids" not in (fs.read_optional(cg.dir, "cgroup.controllers") or "").split():
        pytest.skip("the pids controller is not available in this cgroup2 mount")
    cg.set({"pids": {"limit": 5}})
    out, _ = spawn(*_python(FORK_UNTIL_REFUSED)).communicate(timeout=20)
    assert out.split() == ["refused", "4", str(errno.EAGAIN)]
