"""Memory per idle container: dockyardd's supervisor vs Docker's containerd-shim-runc-v2.

Both engines are private to this script (as in bench/daemon_run.py). On each, N containers
(default 100) are started with `docker run -d busybox sleep 100000` and left idle; then:

- Docker: the PSS and RSS (from /proc/PID/smaps_rollup) of every containerd-shim-runc-v2
  process serving this engine (its command line names the engine's directory), summed and
  divided by N. containerd and dockerd are not counted (they are per engine, not per container).
- dockyardd: one supervisor process holds every container's stdio and exit status, so the cost
  per container is (supervisor's PSS with N containers - its PSS with 0 containers) / N, plus
  whatever other process dockyard starts per container (the script walks the supervisor's and
  the daemon's process trees and counts every process that is not a container's own process).

The containers' own processes (`sleep`, found as the processes in the containers' cgroups /
by their PIDs from `docker inspect`) are excluded on both sides. The daemon's own growth
(dockyardd: N containers' state in one Python process; dockerd and containerd likewise) is
printed for information but is not part of the figure the issue asks for.

    sudo .venv/bin/python bench/container_memory.py [--count 100] [--write]

All containers are removed and both engines stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "acceptance"))

from harness import BenchmarkError, RESULTS, machine_facts, tool_version  # noqa: E402
from daemon_run import finish, run_cli, start_both, warm  # noqa: E402
from docker_engine import DockerEngine, _descendants, docker_cli  # noqa: E402
from dockyardd import Dockyardd  # noqa: E402

SETTLE_SECONDS = 3.0
KEY = "container-memory"


@dataclass
class Mem:
    pss_kb: int = 0
    rss_kb: int = 0
    procs: int = 0

    def __add__(self, other: Mem) -> Mem:
        return Mem(self.pss_kb + other.pss_kb, self.rss_kb + other.rss_kb, self.procs + other.procs)

    def __sub__(self, other: Mem) -> Mem:
        return Mem(self.pss_kb - other.pss_kb, self.rss_kb - other.rss_kb, self.procs - other.procs)


def mem_of(pid: int) -> Mem:
    """PSS and RSS of one process from /proc/PID/smaps_rollup (kB); zero if it is gone."""
    found = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                m = re.match(r"(Rss|Pss):\s+(\d+) kB", line)
                if m:
                    found[m.group(1)] = int(m.group(2))
    except OSError:
        return Mem()
    return Mem(found.get("Pss", 0), found.get("Rss", 0), 1)


def mem_of_all(pids: list[int]) -> Mem:
    total = Mem()
    for pid in pids:
        total += mem_of(pid)
    return total


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def shims_of(engine: DockerEngine) -> list[int]:
    """containerd-shim-runc-v2 processes whose command line names the engine's directory."""
    needle = str(engine.dir)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = cmdline(int(entry))
        if argv and os.path.basename(argv[0]).startswith("containerd-shim") and any(needle in a for a in argv):
            found.append(int(entry))
    return sorted(found)


def containerd_of(engine: DockerEngine) -> list[int]:
    return [p for p in _descendants(engine.pid) if cmdline(p) and os.path.basename(cmdline(p)[0]) == "containerd"]


def container_pids(engine: DockerEngine, ids: list[str]) -> set[int]:
    """The containers' init processes (docker inspect .State.Pid) and their descendants."""
    out = run_cli(engine, "inspect", "--format", "{{.State.Pid}}", *ids)
    pids = {int(x) for x in out.split() if x.strip() and int(x) > 0}
    for pid in list(pids):
        pids.update(_descendants(pid))
    return pids


def start_idle(engine: DockerEngine, count: int) -> list[str]:
    ids = []
    for i in range(count):
        ids.append(run_cli(engine, "run", "-d", "busybox", "sleep", "100000").strip())
        if (i + 1) % 10 == 0:
            print(f"\r  {i + 1}/{count} running", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    running = run_cli(engine, "ps", "--quiet", "--no-trunc").split()
    if len(running) != count:
        raise BenchmarkError(f"{len(running)} containers running, expected {count}")
    return ids


def remove_all(engine: DockerEngine, ids: list[str]) -> None:
    for i in range(0, len(ids), 50):
        run_cli(engine, "rm", "--force", *ids[i:i + 50])


def measure_docker(dk: DockerEngine, count: int) -> dict[str, object]:
    before_daemons = mem_of(dk.pid) + mem_of_all(containerd_of(dk))
    leftover_shims = shims_of(dk)
    ids = start_idle(dk, count)
    time.sleep(SETTLE_SECONDS)
    inside = container_pids(dk, ids)
    shims = [p for p in shims_of(dk) if p not in inside and p not in leftover_shims]
    shim_mem = mem_of_all(shims)
    after_daemons = mem_of(dk.pid) + mem_of_all(containerd_of(dk))
    remove_all(dk, ids)
    return {"total": shim_mem,
            "procs": len(shims), "daemons": after_daemons - before_daemons, "idle_shims": len(leftover_shims)}


def dockyard_tree(dy: Dockyardd) -> list[int]:
    """The supervisor and every process of the daemon's and the supervisor's trees."""
    sup = dy.supervisor_pid()
    pids = set(_descendants(dy.pid))
    if sup is not None:
        pids.add(sup)
        pids.update(_descendants(sup))
    return sorted(pids)


def measure_dockyard(dy: Dockyardd, count: int) -> dict[str, object]:
    sup = dy.supervisor_pid()
    if sup is None:
        raise BenchmarkError("dockyardd has no supervisor after the warm-up")
    time.sleep(SETTLE_SECONDS)
    sup0 = mem_of(sup)
    daemon0 = mem_of(dy.pid)
    extra0 = [p for p in dockyard_tree(dy) if p != sup]
    ids = start_idle(dy, count)
    time.sleep(SETTLE_SECONDS)
    if dy.supervisor_pid() != sup:
        raise BenchmarkError("the supervisor changed while the containers started")
    inside = container_pids(dy, ids)
    sup1 = mem_of(sup)
    daemon1 = mem_of(dy.pid)
    extra = [p for p in dockyard_tree(dy) if p != sup and p not in inside and p not in extra0]
    extra_mem = mem_of_all(extra)
    extra_names = sorted({os.path.basename(cmdline(p)[0]) if cmdline(p) else str(p) for p in extra})
    remove_all(dy, ids)
    return {"sup0": sup0, "sup1": sup1, "extra": extra_mem, "extra_names": extra_names,
            "daemons": daemon1 - daemon0, "inside": len(inside)}


def _ratio(r: float) -> str:
    return f"{r:.2f}x" if r >= 0.1 or r != r else f"{r:.4f}x"


def _kb(v: float) -> str:
    return f"{v / 1024:.2f} MiB" if abs(v) >= 1024 else f"{v:.0f} kB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100, help="idle containers per engine")
    parser.add_argument("--write", action="store_true", help=f"record the result in {RESULTS.name}")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file for --write")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("container_memory.py needs root", file=sys.stderr)
        return 2
    n = args.count
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-mem-"))
    dy = dk = None
    rc = 1
    try:
        dy, dk, _ = start_both(work)
        warm(dy, 2)
        warm(dk, 2)
        tools = {"docker CLI": tool_version([docker_cli(), "--version"]),
                 "dockerd": tool_version(["dockerd", "--version"]),
                 "containerd": tool_version(["containerd", "--version"]),
                 "runc": tool_version(["runc", "--version"])}
        print(f"dockyardd: {n} idle containers ...", file=sys.stderr)
        d = measure_dockyard(dy, n)
        print(f"Docker: {n} idle containers ...", file=sys.stderr)
        k = measure_docker(dk, n)

        sup0, sup1, extra = d["sup0"], d["sup1"], d["extra"]
        assert isinstance(sup0, Mem) and isinstance(sup1, Mem) and isinstance(extra, Mem)
        dy_pss = ((sup1.pss_kb - sup0.pss_kb) + extra.pss_kb) / n
        dy_rss = ((sup1.rss_kb - sup0.rss_kb) + extra.rss_kb) / n
        shim = k["total"]
        assert isinstance(shim, Mem)
        dk_pss = shim.pss_kb / n
        dk_rss = shim.rss_kb / n
        ratio_pss = dy_pss / dk_pss if dk_pss else float("nan")
        ratio_rss = dy_rss / dk_rss if dk_rss else float("nan")
        dyd, dkd = d["daemons"], k["daemons"]
        assert isinstance(dyd, Mem) and isinstance(dkd, Mem)

        rows = [
            ("dockyardd (supervisor delta + per-container processes)", _kb(dy_pss), _kb(dy_rss),
             _ratio(ratio_pss), _ratio(ratio_rss)),
            ("Docker (containerd-shim-runc-v2, all shims / N)", _kb(dk_pss), _kb(dk_rss), "1.00x", "1.00x"),
        ]
        notes = [
            f"dockyardd supervisor: PSS {_kb(sup0.pss_kb)} with 0 containers -> {_kb(sup1.pss_kb)} with {n} "
            f"(RSS {_kb(sup0.rss_kb)} -> {_kb(sup1.rss_kb)}); other per-container processes of dockyard: "
            f"{extra.procs} ({', '.join(d['extra_names']) or 'none'})",  # type: ignore[arg-type]
            f"Docker: {k['procs']} containerd-shim-runc-v2 processes, total PSS {_kb(shim.pss_kb)}, "
            f"RSS {_kb(shim.rss_kb)}; one shim costs PSS {_kb(dk_pss)} (shared text split among the shims)",
            f"for information, daemon growth with {n} containers (not in the figure): dockyardd PSS "
            f"{_kb(dyd.pss_kb)}; dockerd + containerd PSS {_kb(dkd.pss_kb)}",
            "the containers' own processes (`sleep 100000`, found from `docker inspect .State.Pid` and "
            "their descendants) are excluded on both sides",
            "kernel memory (page tables, pipe buffers, sockets) is in neither PSS; the supervisor holds each "
            "container's stdio pipes, a shim holds its own",
            "target (issue): dockyardd <= 1.0x containerd-shim-runc-v2 per container",
        ]
        title = f"Memory per idle container, {n} running: dockyardd supervisor vs containerd-shim-runc-v2"
        head = ("engine", "PSS per container", "RSS per container", "PSS vs Docker", "RSS vs Docker")
        print(title)
        for r in [head, *rows]:
            print("  ".join([r[0].ljust(56), *[c.rjust(18) for c in r[1:]]]))
        for note in notes:
            print(f"note: {note}")
        if args.write:
            facts = machine_facts(tools)
            md = [f"## {title}", "", f"- date: {facts['date']}", f"- machine: {facts['machine']}",
                  f"- tools: {facts['tools']}",
                  f"- method: {n} containers `docker run -d busybox sleep 100000` per engine, measured "
                  f"{SETTLE_SECONDS:.0f} s after the last started; PSS and RSS from /proc/PID/smaps_rollup",
                  "", "| " + " | ".join(head) + " |", "|---|---:|---:|---:|---:|"]
            md += ["| " + " | ".join(r) + " |" for r in rows]
            md += [""] + [f"- {x}" for x in notes]
            _update(args.results, "\n".join(md))
            print(f"recorded in {args.results}")
        rc = 0
    finally:
        problems = finish(dy, dk, work)
    return 1 if problems else rc


def _update(path: Path, markdown: str) -> None:
    """Write or replace this benchmark's section, the way harness.update_results does."""
    from harness import _HEADER
    start, end = f"<!-- bench:{KEY} -->", f"<!-- /bench:{KEY} -->"
    section = f"{start}\n{markdown}\n{end}\n"
    text = path.read_text() if path.exists() else _HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
