"""`docker run --rm busybox true` through the real docker CLI: dockyardd vs the real Docker engine.

Both engines are private to this script (tests/acceptance/dockyardd.py start_dockyardd and
tests/acceptance/docker_engine.py start_engine: their own sockets, data and exec roots under one
temporary directory). The Docker engine (dockerd + containerd + runc) gets busybox the way the
acceptance tests give it (import_busybox: the tests' busybox rootfs); dockyardd serves its embedded
busybox:latest (`docker pull busybox`). Both are warmed up, then the same docker CLI runs

    docker run --rm busybox true

with DOCKER_HOST pointing at each engine in turn (round-robin, bench/harness.py). Optionally
(--detached, on by default) also `docker run -d busybox sleep 1000` followed by
`docker rm -f ID`, timed as a whole and per step.

    sudo .venv/bin/python bench/daemon_run.py [--runs 20] [--warmup 3] [--no-detached] [--write]

At the end both engines are stopped by PID and everything they left removed; the leftovers
reported by the stop functions are printed (and make the exit status 1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "acceptance"))

from harness import (  # noqa: E402
    BenchmarkError,
    Candidate,
    CommandTimeout,
    Context,
    add_common_arguments,
    run_benchmark,
    run_blocking,
    tool_version,
    record_results,
)
from docker_engine import (  # noqa: E402
    DockerEngine,
    docker_cli,
    import_busybox,
    remove_engine_dir,
    start_engine,
    stop_engine,
)
from dockyardd import Dockyardd, start_dockyardd, stop_dockyardd  # noqa: E402

COMMAND_TIMEOUT = 60.0
DOCKYARD = "dockyardd"
DOCKER = "docker (dockerd+containerd+runc)"


def run_cli(engine: DockerEngine, *args: str) -> str:
    """The docker CLI on `engine`; stdout, or BenchmarkError with its stderr."""
    argv = [docker_cli(), *args]
    try:
        proc = run_blocking(argv, timeout=COMMAND_TIMEOUT, env=engine.env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except CommandTimeout as e:
        raise BenchmarkError(f"{' '.join(args)} timed out after {COMMAND_TIMEOUT}s") from e
    if proc.returncode != 0:
        raise BenchmarkError(f"docker {' '.join(args)} exited {proc.returncode}: "
                             f"{(proc.stderr or proc.stdout).strip()[-400:]}")
    return proc.stdout


def start_both(work: Path) -> tuple[Dockyardd | None, DockerEngine | None, list[str]]:
    """Start dockyardd and dockerd with busybox; on failure stop what started and re-raise."""
    dy = dk = None
    try:
        dy = start_dockyardd(work / "dockyardd")
        run_cli(dy, "pull", "busybox")
        dk = start_engine(work / "docker")
        import_busybox(dk)
        return dy, dk, []
    except BaseException:
        stop_both(dy, dk)
        raise


def stop_both(dy: Dockyardd | None, dk: DockerEngine | None) -> list[str]:
    problems: list[str] = []
    if dy is not None:
        problems += [f"dockyardd: {p}" for p in stop_dockyardd(dy)]
    if dk is not None:
        problems += [f"docker: {p}" for p in stop_engine(dk)]
        remove_engine_dir(dk)
    return problems


def finish(dy: Dockyardd | None, dk: DockerEngine | None, work: Path) -> list[str]:
    """Stop both engines by PID and print what they left; the work directory goes only when
    nothing was left (otherwise it stays for inspection). Returns the problems."""
    problems = stop_both(dy, dk)
    for p in problems:
        print(f"clean-up: {p}", file=sys.stderr)
    if not problems:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"left {work} in place for inspection", file=sys.stderr)
    return problems


def warm(engine: DockerEngine, n: int = 3) -> None:
    for _ in range(n):
        run_cli(engine, "run", "--rm", "busybox", "true")


def run_rm_candidate(name: str, engine: DockerEngine) -> Candidate:
    def timed(ctx: Context) -> None:
        run_cli(engine, "run", "--rm", "busybox", "true")
    return Candidate(name, timed)


def detached_candidate(name: str, engine: DockerEngine, steps: dict[str, dict[str, list[float]]]) -> Candidate:
    mine = steps.setdefault(name, {"run -d": [], "rm -f": []})

    def timed(ctx: Context) -> None:
        t0 = time.perf_counter()
        cid = run_cli(engine, "run", "-d", "busybox", "sleep", "1000").strip()
        t1 = time.perf_counter()
        run_cli(engine, "rm", "-f", cid)
        t2 = time.perf_counter()
        if not ctx.warmup:
            mine["run -d"].append(t1 - t0)
            mine["rm -f"].append(t2 - t1)
    return Candidate(name, timed)


def versions(dy: Dockyardd, dk: DockerEngine) -> dict[str, str]:
    tools = {"docker CLI": tool_version([docker_cli(), "--version"]),
             "dockerd": tool_version(["dockerd", "--version"]),
             "containerd": tool_version(["containerd", "--version"]),
             "runc": tool_version(["runc", "--version"])}
    try:
        tools["dockyardd"] = run_cli(dy, "version", "--format", "{{.Server.Version}}").strip()
    except BenchmarkError:
        pass
    return tools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--no-detached", dest="detached", action="store_false",
                        help="skip the `run -d` + `rm -f` benchmark")
    parser.set_defaults(baseline=DOCKER)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("daemon_run.py needs root (both engines create namespaces, mounts and cgroups)", file=sys.stderr)
        return 2
    for tool in ("docker", "dockerd", "containerd", "runc"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (scripts/setup.sh installs it)", file=sys.stderr)
            return 2

    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-daemon-"))
    dy = dk = None
    problems: list[str] = []
    rc = 1
    try:
        dy, dk, _ = start_both(work)
        warm(dy)
        warm(dk)
        tools = versions(dy, dk)
        result = run_benchmark(
            "docker run --rm busybox true (docker CLI): dockyardd vs Docker engine",
            [run_rm_candidate(DOCKYARD, dy), run_rm_candidate(DOCKER, dk)],
            runs=args.runs, warmup=args.warmup, baseline=args.baseline, tools=tools,
            key="daemon-run-rm-true")
        result.notes.append("the same docker CLI for both, DOCKER_HOST set to each engine's private unix "
                            "socket; each timed run is one whole `docker` process")
        result.notes.append("Docker: default runtime runc, --bridge=none --iptables=false, busybox imported "
                            "from the tests' rootfs; dockyardd: its embedded busybox, --log-level debug")
        result.notes.append("target (issue): dockyardd <= 0.5x Docker")
        print(result.text())
        results = [result]
        if args.detached:
            steps: dict[str, dict[str, list[float]]] = {}
            det = run_benchmark(
                "docker run -d busybox sleep 1000 + docker rm -f (docker CLI): dockyardd vs Docker engine",
                [detached_candidate(DOCKYARD, dy, steps), detached_candidate(DOCKER, dk, steps)],
                runs=args.runs, warmup=args.warmup, baseline=args.baseline, tools=tools,
                key="daemon-run-detached-rm")
            for name, per in steps.items():
                if all(per.values()):
                    det.notes.append(f"{name} median ms per step: " + " / ".join(
                        f"{k} {statistics.median(v) * 1000:.1f}" for k, v in per.items()))
            det.notes.append("two docker CLI processes per run; the container's id comes from `run -d`")
            print(det.text())
            results.append(det)
        rc = record_results(results, args)
    finally:
        problems = finish(dy, dk, work)
    return 1 if problems else rc


if __name__ == "__main__":
    sys.exit(main())
