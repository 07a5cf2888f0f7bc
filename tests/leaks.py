"""Snapshots of kernel objects a test may leave behind: mounts, cgroups, netns, veths, processes.

`conftest.py` takes one before and one after every test and at the ends of the session; anything
new that is still there afterwards fails the test and is then removed, so that one leak does
not cascade into the tests after it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

CGROUP_ROOT = "/sys/fs/cgroup"
# Parent cgroups that engines keep for all their containers (as Docker keeps /docker): they may
# outlive a test; only what lies below them counts.
SHARED_CGROUP_PARENTS = {"dockyard"}
# Subtrees owned by this machine's own supervisor, which makes a cgroup for every command it runs
# (including the ones that started this test session): never ours.
FOREIGN_CGROUP_PARENTS = {"process_api"}
# DOCKYARD_LEAK_SCOPE=processes limits the check to this session's own processes, for machines
# where other test sessions run at the same time; CI checks everything.
SCOPE = os.environ.get("DOCKYARD_LEAK_SCOPE", "all")


def _mounts() -> set[tuple[str, str]]:
    found = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            # (mount point, mount id) so that a re-mount on the same path also counts
            found.add((parts[4], parts[0]))
    return found


def _cgroups() -> set[str]:
    found: set[str] = set()
    if not os.path.isdir(CGROUP_ROOT):
        return found
    for hierarchy in os.listdir(CGROUP_ROOT):
        top = os.path.join(CGROUP_ROOT, hierarchy)
        if not os.path.isdir(top) or os.path.islink(top):
            continue
        for dirpath, dirnames, _ in os.walk(top):
            for d in dirnames:
                if dirpath == top and d in SHARED_CGROUP_PARENTS:
                    continue
                found.add(os.path.join(dirpath, d))
            if dirpath == top:
                dirnames[:] = [d for d in dirnames if d not in FOREIGN_CGROUP_PARENTS]
    return found


def _netns() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def stat_fields(pid: str | int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2 :].split()


def _stat(pid: str) -> tuple[int, int] | None:
    """(ppid, starttime) of a live, non-zombie process."""
    rest = stat_fields(pid)
    if rest is None or rest[0] in ("Z", "X"):
        return None
    return int(rest[1]), int(rest[19])


def _processes() -> dict[int, tuple[int, int]]:
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(entry)
            if st is not None:
                procs[int(entry)] = st
    return procs


@dataclass
class Snapshot:
    mounts: set[tuple[str, str]] = field(default_factory=_mounts)
    cgroups: set[str] = field(default_factory=_cgroups)
    netns: set[str] = field(default_factory=_netns)
    links: set[str] = field(default_factory=_links)
    processes: dict[int, tuple[int, int]] = field(default_factory=_processes)


def _new_processes(before: Snapshot, after: Snapshot) -> list[int]:
    """New live processes descending from this test process (it is a child subreaper, so orphans
    such as container inits are re-parented to it rather than to init)."""
    me = os.getpid()
    new = {pid: st for pid, st in after.processes.items() if before.processes.get(pid) != st}
    leaked = []
    for pid in new:
        cur, hops = pid, 0
        while cur in after.processes and hops < 64:
            ppid = after.processes[cur][0]
            if ppid == me:
                leaked.append(pid)
                break
            cur, hops = ppid, hops + 1
    return sorted(leaked)


def become_subreaper() -> None:
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _container_zombie(entry: str, me: str) -> bool:
    """A zombie child of ours from a nested PID namespace: a container process we adopted.
    Our own subprocesses live in our namespace, so reaping these never steals a Popen's status."""
    try:
        with open(f"/proc/{entry}/status") as f:
            status = f.read()
    except OSError:
        return False
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return (fields.get("State", "").strip().startswith("Z") and fields.get("PPid", "").strip() == me
            and len(fields.get("NSpid", "").split()) > 1)


def start_container_reaper() -> None:
    """Reap adopted container processes as a shim would; a PID namespace's init cannot finish
    dying until its other processes are reaped."""
    import threading

    def loop() -> None:
        me = str(os.getpid())
        while True:
            for entry in os.listdir("/proc"):
                if entry.isdigit() and _container_zombie(entry, me):
                    try:
                        os.waitpid(int(entry), os.WNOHANG)
                    except ChildProcessError:
                        pass
            time.sleep(0.05)

    threading.Thread(target=loop, name="container-reaper", daemon=True).start()


def reap_orphans() -> None:
    """Collect exited orphans re-parented to us (only zombies: live children are left alone)."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        rest = stat_fields(entry) if entry.isdigit() else None
        if rest is not None and rest[0] == "Z" and rest[1] == me:
            try:
                os.waitpid(int(entry), os.WNOHANG)
            except ChildProcessError:
                pass


def compare(before: Snapshot, settle: float = 2.0) -> list[str]:
    """What is new since `before`; waits up to `settle` seconds for things that are going away."""
    deadline = time.monotonic() + settle
    while True:
        reap_orphans()
        after = Snapshot()
        problems = []
        if SCOPE == "processes":
            after.mounts, after.cgroups, after.netns, after.links = before.mounts, before.cgroups, before.netns, before.links
        mounts = sorted(m for m, _ in after.mounts - before.mounts)
        if mounts:
            problems.append(f"mounts left behind: {mounts}")
        cgroups = sorted(after.cgroups - before.cgroups)
        if cgroups:
            problems.append(f"cgroups left behind: {cgroups[:10]}")
        netns = sorted(after.netns - before.netns)
        if netns:
            problems.append(f"network namespaces left behind: {netns}")
        links = sorted(after.links - before.links)
        if links:
            problems.append(f"network links left behind: {links}")
        procs = _new_processes(before, after)
        if procs:
            problems.append(f"processes left behind: {[(p, _cmdline(p)) for p in procs]}")
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(0.1)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def clean_up(before: Snapshot) -> None:
    """Remove what a test left behind: only objects that were not there before it."""
    after = Snapshot()
    for pid in _new_processes(before, after):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.2)
    if SCOPE == "processes":
        return
    for mount_point, _ in sorted(after.mounts - before.mounts, key=lambda m: -len(m[0])):
        subprocess.run(["umount", "-l", mount_point], capture_output=True)
    for cg in sorted(after.cgroups - before.cgroups, key=len, reverse=True):
        try:
            os.rmdir(cg)
        except OSError:
            pass
    for ns in after.netns - before.netns:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    for link in after.links - before.links:
        subprocess.run(["ip", "link", "delete", link], capture_output=True)
