"""Container lifecycle through the OCI runtime CLI: dockyard-runtime vs runc vs crun.

The timed unit is what a container manager does for a short-lived container:

    RUNTIME --root R create --bundle B ID
    RUNTIME --root R start ID
    RUNTIME --root R state ID      (repeated until its JSON says "stopped")
    RUNTIME --root R delete ID

on one busybox bundle whose process is `true` (or `echo hi`, written to /dev/null), shared by
all runtimes. Each runtime has its own state directory; every run uses a fresh container id.
The runtimes take turns (round-robin) so that the machine's noise is spread evenly.

crun is called through bench/crun-hybrid.sh (this machine's hybrid cgroup layout needs it);
the wrapper's own cost per call is measured separately and reported beside the figures.
If dockyard-runtime is missing or does not complete a lifecycle yet, the script says so and
compares runc and crun only.

    sudo .venv/bin/python bench/runtime_lifecycle.py [--runs 20] [--warmup 3] [--write]

At the end, every container the script created is force-deleted and its cgroups removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO / "tests"))

from harness import (  # noqa: E402
    BenchmarkError,
    Candidate,
    CommandTimeout,
    Context,
    Result,
    add_common_arguments,
    commands,
    run_benchmark,
    run_blocking,
    tool_version,
    update_results,
)
from helpers.bundle import make_bundle  # noqa: E402

CRUN_WRAPPER = BENCH_DIR / "crun-hybrid.sh"
CGROUP_ROOT = Path("/sys/fs/cgroup")
COMMAND_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
PROCESSES = {"true": ["true"], "echo": ["echo", "hi"]}


@dataclass
class Runtime:
    """One OCI runtime CLI with its own state directory, and the container ids it was given."""

    name: str
    prefix: list[str]
    root: Path
    ids: list[str] = field(default_factory=list)
    polls: list[int] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=dict)

    def argv(self, *args: str) -> list[str]:
        return [*self.prefix, "--root", str(self.root), *args]

    def call(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            result = run_blocking(self.argv(*args), timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except CommandTimeout as e:
            raise BenchmarkError(f"{self.name}: {' '.join(args)} timed out after {COMMAND_TIMEOUT}s") from e
        if result.returncode != 0:
            raise BenchmarkError(f"{self.name}: {' '.join(args)} exited {result.returncode}: "
                                 f"{result.stderr.strip()[-400:]}")
        return result

    def create(self, bundle: Path, cid: str) -> None:
        # The container inherits create's stdio (terminal is false): with pipes, the read side
        # would wait for the container to exit, so its output goes to /dev/null and errors to a file.
        # run_blocking, not subprocess.run(timeout=): that one polls for the end of a command
        # without pipes in doubling sleeps, which rounded every create up to 31.5 ms.
        self.ids.append(cid)
        with tempfile.TemporaryFile("w+") as err:
            try:
                rc = run_blocking(self.argv("create", "--bundle", str(bundle), cid), timeout=COMMAND_TIMEOUT,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err).returncode
            except CommandTimeout as e:
                raise BenchmarkError(f"{self.name}: create timed out after {COMMAND_TIMEOUT}s") from e
            if rc != 0:
                err.seek(0)
                raise BenchmarkError(f"{self.name}: create exited {rc}: {err.read().strip()[-400:]}")

    def wait_stopped(self, cid: str) -> int:
        """Poll `state` until the status is stopped; return the number of polls."""
        deadline = time.monotonic() + STOP_TIMEOUT
        polls = 0
        while True:
            polls += 1
            out = self.call("state", cid).stdout
            try:
                status = json.loads(out)["status"]
            except (ValueError, KeyError, TypeError) as e:
                raise BenchmarkError(f"{self.name}: state printed no status: {out[:200]!r}") from e
            if status == "stopped":
                return polls
            if time.monotonic() > deadline:
                raise BenchmarkError(f"{self.name}: {cid} still {status} after {STOP_TIMEOUT}s")

    def lifecycle(self, bundle: Path, cid: str, record: bool = True) -> None:
        """The timed unit; with `record`, the polls and the time of each step are kept."""
        t0 = time.perf_counter()
        self.create(bundle, cid)
        t1 = time.perf_counter()
        self.call("start", cid)
        t2 = time.perf_counter()
        polls = self.wait_stopped(cid)
        t3 = time.perf_counter()
        self.call("delete", cid)
        t4 = time.perf_counter()
        if record:
            self.polls.append(polls)
            for step, seconds in (("create", t1 - t0), ("start", t2 - t1), ("wait", t3 - t2),
                                  ("delete", t4 - t3)):
                self.steps.setdefault(step, []).append(seconds)

    def step_summary(self) -> str:
        return " / ".join(f"{step} {statistics.median(v) * 1000:.1f}" for step, v in self.steps.items())

    def force_delete(self, cid: str) -> None:
        subprocess.run(self.argv("delete", "--force", cid), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=COMMAND_TIMEOUT)

    def leftovers(self) -> list[str]:
        """Ids this script created that still name something in the runtime's state directory."""
        present: set[str] = set()
        for _, dirnames, filenames in os.walk(self.root):
            present.update(dirnames, filenames)
        return [cid for cid in self.ids if cid in present]


def find_dockyard_runtime() -> str | None:
    """$DOCKYARD_RUNTIME, else the project's virtualenv, else PATH."""
    env = os.environ.get("DOCKYARD_RUNTIME")
    if env:
        return env
    venv = REPO / ".venv" / "bin" / "dockyard-runtime"
    if os.access(venv, os.X_OK):
        return str(venv)
    return shutil.which("dockyard-runtime")


def runtime_prefixes() -> dict[str, list[str] | None]:
    dockyard = find_dockyard_runtime()
    runc = shutil.which("runc")
    return {
        "dockyard-runtime": [dockyard] if dockyard else None,
        "runc": [runc] if runc else None,
        "crun": [str(CRUN_WRAPPER)] if shutil.which("crun") and shutil.which("unshare") else None,
    }


def probe(rt: Runtime, bundle: Path) -> str | None:
    """Run one lifecycle; None if it worked, else why not."""
    try:
        rt.lifecycle(bundle, f"{_id_prefix()}probe-{rt.name}", record=False)
    except BenchmarkError as e:
        return str(e)
    return None


def _id_prefix() -> str:
    return f"bench-{os.getpid()}-"


def remove_cgroups(prefix: str) -> list[str]:
    """Remove cgroup directories named prefix* in every hierarchy; return the ones that stay."""
    found = []
    for dirpath, dirnames, _ in os.walk(CGROUP_ROOT):
        found += [os.path.join(dirpath, d) for d in dirnames if d.startswith(prefix)]
    stuck = []
    for path in sorted(found, key=len, reverse=True):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            stuck.append(f"{path} ({e.strerror})")
    return stuck


def clean_up(runtimes: list[Runtime]) -> list[str]:
    """Force-delete what is left of every container, then remove their cgroups."""
    problems = []
    for rt in runtimes:
        for cid in rt.leftovers():
            rt.force_delete(cid)
        still = rt.leftovers()
        if still:
            problems.append(f"{rt.name} still has state for {still}")
    problems += [f"cgroup left: {p}" for p in remove_cgroups(_id_prefix())]
    return problems


def version_call_floor(prefix: list[str], runs: int, warmup: int) -> float | None:
    """Median seconds of `RUNTIME --version`: the least any call of that runtime costs."""
    result = run_benchmark("version", [Candidate("v", commands([*prefix, "--version"]))],
                           runs=runs, warmup=warmup, progress=False)
    series = result.series[0]
    return statistics.median(series.seconds) if series.ok else None


def wrapper_overhead(runs: int, warmup: int) -> Result | None:
    """Cost per call of crun-hybrid.sh: `crun --version` bare and through the wrapper."""
    crun = shutil.which("crun")
    if crun is None:
        return None
    return run_benchmark(
        "crun-hybrid.sh wrapper cost per call (crun --version)",
        [Candidate("crun", commands([crun, "--version"])),
         Candidate("crun-hybrid.sh", commands([str(CRUN_WRAPPER), "--version"]))],
        runs=runs, warmup=warmup, baseline="crun", progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--process", choices=sorted(PROCESSES), default="true",
                        help="what the container runs")
    parser.add_argument("--only", default=None,
                        help="comma-separated runtimes to compare (dockyard-runtime,runc,crun)")
    parser.set_defaults(baseline="runc")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("runtime_lifecycle.py needs root (runtimes create namespaces and cgroups)", file=sys.stderr)
        return 2
    wanted = args.only.split(",") if args.only else None

    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
    runtimes: list[Runtime] = []
    try:
        bundle = make_bundle(work / "bundle", PROCESSES[args.process], hardlink=True)
        tools: dict[str, str] = {}
        notes: list[str] = []
        for name, prefix in runtime_prefixes().items():
            if wanted is not None and name not in wanted:
                continue
            if prefix is None:
                print(f"{name}: not installed, left out", file=sys.stderr)
                notes.append(f"{name} not installed")
                continue
            rt = Runtime(name, prefix, work / f"state-{name}")
            runtimes.append(rt)
            why = probe(rt, bundle)
            if why is not None:
                print(f"{name} is not working yet, left out of the comparison: {why}", file=sys.stderr)
                notes.append(f"{name} left out: it did not complete a probe lifecycle ({why[:200]})")
                continue
            version_cmd = [*prefix[:1], "--version"] if name != "crun" else ["crun", "--version"]
            tools[name] = tool_version(version_cmd)
        candidates = [_candidate(rt, bundle) for rt in runtimes if rt.name in tools]
        if not candidates:
            print("no runtime completed a lifecycle: nothing to compare", file=sys.stderr)
            return 1
        baseline = args.baseline if args.baseline in tools else candidates[0].name
        result = run_benchmark(
            f"OCI runtime lifecycle: create + start + wait (state polls) + delete, `{args.process}`",
            candidates, runs=args.runs, warmup=args.warmup, baseline=baseline, tools=tools,
            key=f"runtime-lifecycle-{args.process}")
        polls = ", ".join(f"{rt.name} {sum(rt.polls) / len(rt.polls):.2f}"
                          for rt in runtimes if rt.polls)
        notes.append(f"state polls per run (mean): {polls}")
        for rt in runtimes:
            if rt.steps:
                floor = version_call_floor(rt.prefix, args.runs, args.warmup)
                floor_text = f"; `--version` alone: {floor * 1000:.1f}" if floor is not None else ""
                notes.append(f"{rt.name} median ms per step: {rt.step_summary()}{floor_text}")
        overhead = wrapper_overhead(args.runs, args.warmup) if "crun" in tools else None
        if overhead is not None:
            bare, wrapped = overhead.series
            if bare.ok and wrapped.ok:
                extra = statistics.median(wrapped.seconds) - statistics.median(bare.seconds)
                notes.append(f"crun runs through crun-hybrid.sh (hybrid cgroups), which adds about "
                             f"{extra * 1000:.1f} ms per call (median, measured on `--version`), "
                             f"i.e. ~{extra * 1000 * (3 + _mean_polls(runtimes, 'crun')):.1f} ms "
                             f"per lifecycle")
        dockyard = next((rt for rt in runtimes if rt.name == "dockyard-runtime" and rt.steps), None)
        if dockyard is not None:
            sys.path.insert(0, str(REPO / "src"))
            from dockyard.shim.inproc import native_front_launcher

            notes.append("dockyard-runtime: " + (
                "state, start and delete answered by its native front (native/runtime_front.c); "
                "create runs the Python runtime (`--version` too)" if native_front_launcher(dockyard.prefix[0])
                else "installed without its native front: every verb runs the Python runtime"))
        notes.append("each command is waited for with a blocking wait (harness.run_blocking); tables "
                     "before 2026-11-29 05:30 UTC used subprocess.run(timeout=), whose polling rounded "
                     "every runtime's create up to ~31.5 ms")
        result.notes += notes
        print(result.text())
        if args.write:
            update_results(args.results, result)
            print(f"recorded in {args.results}")
        return 0
    finally:
        problems = clean_up(runtimes)
        shutil.rmtree(work, ignore_errors=True)
        for p in problems:
            print(f"clean-up: {p}", file=sys.stderr)


def _mean_polls(runtimes: list[Runtime], name: str) -> float:
    for rt in runtimes:
        if rt.name == name and rt.polls:
            return sum(rt.polls) / len(rt.polls)
    return 1.0


def _candidate(rt: Runtime, bundle: Path) -> Candidate:
    prefix = _id_prefix()

    def timed(ctx: Context) -> None:
        rt.lifecycle(bundle, f"{prefix}{rt.name}-{ctx.run}", record=not ctx.warmup)

    def teardown(ctx: Context) -> None:
        cid = f"{prefix}{rt.name}-{ctx.run}"
        if cid in rt.leftovers():
            rt.force_delete(cid)

    return Candidate(rt.name, timed, teardown=teardown)


if __name__ == "__main__":
    sys.exit(main())
