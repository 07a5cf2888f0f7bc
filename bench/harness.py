"""Side-by-side timing of named commands, interleaved, with a markdown record of the results.

Each candidate (a tool under comparison) has a timed action and, optionally, untimed setup and
teardown actions around every run. The rounds are interleaved: a, b, c, a, b, c, ... so that a
slow period of the machine (another job, a cache flush) hits every candidate alike. The first
`warmup` rounds are run and discarded. The report gives min/median/max per candidate and the
ratio of its median to the baseline's median.

As a library (see runtime_lifecycle.py):

    result = run_benchmark("tool versions", [
        Candidate("runc", commands(["runc", "--version"])),
        Candidate("crun", commands(["crun", "--version"])),
    ], runs=20, warmup=3, baseline="runc")
    print(result.text())
    update_results(RESULTS, result)

From the command line, each candidate is NAME=COMMAND (split like a shell would; `{run}`
becomes the run number, `{name}` the candidate's name):

    python bench/harness.py --runs 30 --baseline runc 'runc=runc --version' 'crun=crun --version'
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "RESULTS.md"
DEFAULT_RUNS = 20
DEFAULT_WARMUP = 3


class BenchmarkError(Exception):
    """A step of a run failed; the message says which command and what it printed."""


@dataclass
class Context:
    """What an action knows about the run it belongs to; `data` carries values from setup."""

    name: str
    run: int
    warmup: bool
    data: dict[str, Any] = field(default_factory=dict)


Action = Callable[[Context], None]


@dataclass
class Candidate:
    name: str
    timed: Action
    setup: Action | None = None
    teardown: Action | None = None


@dataclass
class Series:
    name: str
    seconds: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.seconds)


@dataclass
class Result:
    title: str
    key: str
    series: list[Series]
    baseline: str | None
    runs: int
    warmup: int
    facts: dict[str, str]
    notes: list[str] = field(default_factory=list)

    def _baseline_median(self) -> float | None:
        for s in self.series:
            if s.name == self.baseline and s.ok:
                return statistics.median(s.seconds)
        return None

    def rows(self) -> list[tuple[str, str, str, str, str, str]]:
        """(name, runs, min, median, max, ratio) as text, times in milliseconds."""
        base = self._baseline_median()
        rows = []
        for s in self.series:
            if not s.ok:
                rows.append((s.name, str(len(s.seconds)), "-", "-", "-", f"failed: {s.error}"))
                continue
            med = statistics.median(s.seconds)
            ratio = f"{med / base:.2f}x" if base else "-"
            rows.append((s.name, str(len(s.seconds)), _ms(min(s.seconds)), _ms(med),
                         _ms(max(s.seconds)), ratio))
        return rows

    def text(self) -> str:
        head = ("candidate", "runs", "min ms", "median ms", "max ms", f"median vs {self.baseline}")
        rows = [head, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        lines = [self.title]
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:-1], widths[1:])]
            lines.append("  ".join([*cells, r[-1]]))
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def markdown(self) -> str:
        facts = self.facts
        lines = [
            f"## {self.title}",
            "",
            f"- date: {facts.get('date', '?')}",
            f"- machine: {facts.get('machine', '?')}",
            f"- tools: {facts.get('tools', '?')}",
            f"- method: {self.runs} timed runs per candidate, interleaved round-robin, after "
            f"{self.warmup} discarded warm-up rounds",
            "",
            f"| candidate | runs | min ms | median ms | max ms | median vs {self.baseline} |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        lines += ["| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in r) + " |"
                  for r in self.rows()]
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# ---------------------------------------------------------------------------- running commands


class CommandTimeout(BenchmarkError):
    """A command ran longer than its timeout and was killed."""


def run_blocking(argv: Sequence[str], *, timeout: float, input: str | None = None,
                 **popen_kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """subprocess.run without its polling: the end of the command is seen at once.

    subprocess.run(timeout=...) waits for a child with no pipes by polling waitpid with
    sleeps that double from 0.5 ms to 50 ms, so a command that takes 17 ms is seen to end
    at 31.5 ms. Here the wait blocks, and a timer kills the command after `timeout` seconds.
    """
    import threading

    proc = subprocess.Popen(list(argv), **popen_kwargs)
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        out, err = proc.communicate(input)
    finally:
        timer.cancel()
    if killed.is_set():
        raise CommandTimeout(f"{shlex.join(argv)}: timed out after {timeout}s")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_command(argv: Sequence[str], *, timeout: float = 60, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run argv with output captured; on failure raise BenchmarkError with its stderr."""
    try:
        result = run_blocking(argv, timeout=timeout, input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL)
    except OSError as e:
        raise BenchmarkError(f"{shlex.join(argv)}: {e}") from e
    if check and result.returncode != 0:
        raise BenchmarkError(f"{shlex.join(argv)} exited {result.returncode}: "
                             f"{(result.stderr or result.stdout).strip()[-500:]}")
    return result


def commands(*argvs: Sequence[str]) -> Action:
    """An action running each argv in turn; `{run}` and `{name}` in an argument are filled in."""
    def action(ctx: Context) -> None:
        for argv in argvs:
            run_command([a.format(run=ctx.run, name=ctx.name) for a in argv])
    return action


def tool_version(argv: Sequence[str]) -> str:
    """The first line of `argv` (e.g. [tool, "--version"]), or why there is none."""
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e.__class__.__name__})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else f"unknown (exit {out.returncode})"


def machine_facts(tools: dict[str, str] | None = None) -> dict[str, str]:
    """Date, CPU count and model, kernel, OS and Python, and the given tool versions."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    osname = "?"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = (f"{os.cpu_count()} CPUs ({cpu}), kernel {platform.release()}, {osname}, "
               f"Python {platform.python_version()}")
    tool_text = ", ".join(f"{k}: {v}" for k, v in (tools or {}).items()) or "-"
    return {"date": now, "machine": machine, "tools": tool_text}


# ---------------------------------------------------------------------------- the benchmark


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _call(action: Action | None, ctx: Context) -> None:
    if action is not None:
        action(ctx)


def run_benchmark(title: str, candidates: Sequence[Candidate], *, runs: int = DEFAULT_RUNS,
                  warmup: int = DEFAULT_WARMUP, baseline: str | None = None,
                  tools: dict[str, str] | None = None, key: str | None = None,
                  progress: bool = True) -> Result:
    """Time every candidate `runs` times, interleaved, after `warmup` discarded rounds.

    A candidate whose setup, timed action or teardown fails is dropped from the later rounds
    and reported as failed with the error; the others carry on.
    """
    if runs < 1 or warmup < 0:
        raise ValueError("runs must be >= 1 and warmup >= 0")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must be unique: {names}")
    baseline = baseline or names[0]
    if baseline not in names:
        raise ValueError(f"baseline {baseline!r} is not one of {names}")
    series = {c.name: Series(c.name) for c in candidates}
    active = list(candidates)
    for rnd in range(warmup + runs):
        is_warmup = rnd < warmup
        for cand in list(active):
            ctx = Context(cand.name, rnd, is_warmup)
            try:
                seconds = _one_run(cand, ctx)
            except BenchmarkError as e:
                series[cand.name].error = str(e)
                active.remove(cand)
                if progress:
                    print(f"  {cand.name}: dropped after a failure: {e}", file=sys.stderr)
                continue
            if not is_warmup:
                series[cand.name].seconds.append(seconds)
        if progress:
            label = "warm-up" if is_warmup else "round"
            n = rnd + 1 if is_warmup else rnd - warmup + 1
            print(f"\r  {label} {n}/{warmup if is_warmup else runs}   ", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return Result(title, key or _slug(title), [series[n] for n in names], baseline, runs, warmup,
                  machine_facts(tools))


def _one_run(cand: Candidate, ctx: Context) -> float:
    """Setup, timed action, teardown; the teardown runs even when the timed action fails."""
    _call(cand.setup, ctx)
    try:
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            cand.timed(ctx)
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
    finally:
        _call(cand.teardown, ctx)
    return elapsed


# ---------------------------------------------------------------------------- RESULTS.md

_HEADER = """# Benchmark results

Written by `bench/harness.py`: each section is replaced when its benchmark runs again.
Times are wall-clock (`time.perf_counter`) around the timed commands only.
"""


def record_results(results: list[Result], args: argparse.Namespace) -> int:
    """With --write, each result's section goes into the results file; 0 when every series ran."""
    if args.write:
        for r in results:
            update_results(args.results, r)
        print(f"recorded in {args.results}")
    return 0 if all(s.ok for r in results for s in r.series) else 1


def update_results(path: Path, result: Result) -> None:
    """Write or replace `result`'s section (marked by its key) in the markdown file at `path`."""
    start, end = f"<!-- bench:{result.key} -->", f"<!-- /bench:{result.key} -->"
    section = f"{start}\n{result.markdown()}\n{end}\n"
    text = path.read_text() if path.exists() else _HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- command line


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs per candidate")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="discarded warm-up rounds")
    parser.add_argument("--baseline", default=None, help="candidate the ratios are relative to")
    parser.add_argument("--write", action="store_true", help=f"record the result in {RESULTS.name}")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file for --write")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--title", default="commands", help="section title in the results file")
    parser.add_argument("candidates", nargs="+", metavar="NAME=COMMAND")
    args = parser.parse_args(argv)
    cands, tools = [], {}
    for item in args.candidates:
        name, sep, command = item.partition("=")
        if not sep or not name or not command:
            parser.error(f"expected NAME=COMMAND, got {item!r}")
        argv_ = shlex.split(command)
        cands.append(Candidate(name, commands(argv_)))
        tools[name] = command
    result = run_benchmark(args.title, cands, runs=args.runs, warmup=args.warmup,
                           baseline=args.baseline, tools=tools)
    print(result.text())
    if args.write:
        update_results(args.results, result)
        print(f"recorded in {args.results}")
    return 0 if all(s.ok for s in result.series) else 1


if __name__ == "__main__":
    sys.exit(main())
