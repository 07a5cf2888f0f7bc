"""Run the OCI runtime-tools validation suite against dockyard-runtime and runc, side by side.

    sudo .venv/bin/python tests/external/runtime_tools_suite.py --source DIR [--report bench/RUNTIME-TOOLS.md]

DIR is a checkout of github.com/opencontainers/runtime-tools (not part of this project; any
way of getting it will do, e.g. `git archive e931285 | tar -x -C DIR`, the last commit whose
vendored modules build with Debian 12's Go 1.19). The script builds `runtimetest` (static)
and every `validation/*/*.go` with `go build -mod=vendor` (golang-go from apt; the build cache
stays under DIR/.dockyard-build), then runs each validation program once per runtime, from DIR
(where they find rootfs-amd64.tar.gz and runtimetest), with RUNTIME set to the runtime and
TMPDIR to a private directory (their bundles go there and are removed afterwards).

Each program prints TAP: `ok`, `not ok` and `# SKIP` lines are counted per program and
runtime. A program's exit status is its own verdict too: one that fails (util.Fatal: exit 1,
a crash or a timeout) without a failed TAP check counts one failure; the `*_fail` programs
print nothing and exit 0 when the runtime refuses the bad configuration, which counts one pass.
The report lists, per program, both runtimes' counts, and every check that passes with runc
but not with dockyard-runtime (its first diagnostic line).

Not collected by pytest (see tests/external/conftest.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TIMEOUT = 180.0
_TAP = re.compile(r"^(not ok|ok)\s+(\d+)\s*(?:-\s*)?(.*)$")


@dataclass
class Outcome:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    planned: bool = False
    status: str = ""
    failures: dict[int, str] = field(default_factory=dict)  # check number -> description
    passes: dict[int, str] = field(default_factory=dict)


def build(source: Path) -> list[Path]:
    """runtimetest and the validation programs; the programs, sorted."""
    env = dict(os.environ, GOFLAGS="-mod=vendor", GOCACHE=str(source / ".dockyard-build" / "cache"),
               GOPATH=str(source / ".dockyard-build" / "gopath"), GO111MODULE="on")
    if not (source / "runtimetest").exists():
        subprocess.run(["go", "build", "-tags", "netgo", "-o", "runtimetest", "./cmd/runtimetest"], cwd=source,
                       env=dict(env, CGO_ENABLED="0"), check=True)
    programs = []
    for main in sorted(source.glob("validation/*/*.go")):
        if main.parent.name == "util" or main.stem != main.parent.name:
            continue
        program = main.with_suffix(".t")
        if not program.exists():
            subprocess.run(["go", "build", "-o", str(program), str(main)], cwd=source, env=env, check=True)
        programs.append(program)
    return programs


def run(program: Path, runtime: str, source: Path) -> Outcome:
    tmp = tempfile.mkdtemp(prefix="rt-validation-", dir="/var/lib" if os.access("/var/lib", os.W_OK) else None)
    out = Outcome()
    try:
        proc = subprocess.run([str(program)], cwd=source, env=dict(os.environ, RUNTIME=runtime, TMPDIR=tmp),
                              capture_output=True, text=True, timeout=TIMEOUT)
        text, code, stderr = proc.stdout, proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as e:
        text = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        code, stderr = -1, ""
        out.status = f"timed out after {TIMEOUT:.0f} s"
    finally:
        left = _unmount_under(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    if left:  # e.g. rootfsPropagation "shared": the container's mounts reached the host's view
        out.status = f"{left} mounts left in the host's namespace (removed)"
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^1\.\.\d+", line):
            out.planned = True
        m = _TAP.match(line)
        if not m:
            continue
        number, description = int(m.group(2)), m.group(3).strip()
        if "# SKIP" in description.upper():
            out.skipped += 1
        elif m.group(1) == "ok":
            out.passed += 1
            out.passes[number] = description
        else:
            out.failed += 1
            detail = next((x.strip() for x in lines[i + 1:i + 12] if x.strip().startswith(("error", "message", "reference"))), "")
            out.failures[number] = (description + (f" ({detail})" if detail else "")).strip()
    if code == 0 and not out.planned and not out.failed:
        # the *_fail programs print nothing and exit 0 when the runtime refuses, as required
        out.passed += 1
        out.passes[0] = "the runtime refused the configuration, as required"
        out.status = "no TAP output, exit 0: passed"
    elif code != 0 and not out.failed:
        out.failed += 1  # the program's own verdict (util.Fatal), even after passing TAP checks
        message = next((x.strip() for x in stderr.splitlines() if x.strip()), "") if stderr else ""
        out.failures[0] = f"exited {code}" + (f": {message[:160]}" if message else "")
        out.status = out.status or (f"exited {code}" + ("" if out.planned else " without a TAP plan"))
    return out


def _unmount_under(directory: str) -> int:
    """Detach every mount at or below `directory` (deepest first); how many there were."""
    prefix = os.path.realpath(directory)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].encode().decode("unicode_escape") for line in f]
    inside = sorted({p for p in points if p == prefix or p.startswith(prefix + "/")}, key=len, reverse=True)
    for point in inside:
        subprocess.run(["umount", "-l", point], capture_output=True)
    return len(inside)


def report(results: dict[str, dict[str, Outcome]], runtimes: dict[str, str], versions: dict[str, str],
           source: Path, revision: str) -> str:
    names = list(runtimes)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# OCI runtime-tools validation suite: dockyard-runtime vs runc",
        "",
        f"Run: {now} on one machine (cgroup v1 host, root). runtime-tools {revision} built with "
        f"{versions.get('go', 'go')} (`go build -mod=vendor`).",
        "",
        *[f"- {n}: {versions.get(n, '')} (`{runtimes[n]}`)" for n in names],
        "",
        "Reproduce: `sudo .venv/bin/python tests/external/runtime_tools_suite.py --source DIR --report "
        "bench/RUNTIME-TOOLS.md` (DIR: a runtime-tools checkout, see the script).",
        "",
        "## Counts (TAP checks: passed / failed / skipped)",
        "",
        "| validation program | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    totals = {n: [0, 0, 0] for n in names}
    for program in sorted(results):
        cells = []
        for n in names:
            o = results[program][n]
            totals[n][0] += o.passed
            totals[n][1] += o.failed
            totals[n][2] += o.skipped
            cells.append(f"{o.passed} / {o.failed} / {o.skipped}" + (f" ({o.status})" if o.status else ""))
        lines.append(f"| {program} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{t[0]} / {t[1]} / {t[2]}**" for t in totals.values()) + " |")
    programs_clean = {n: sum(1 for p in results if results[p][n].failed == 0) for n in names}
    lines += ["", "Programs with no failed check: " + ", ".join(f"{n} {programs_clean[n]} of {len(results)}" for n in names), ""]
    ours, ref = names[0], names[1] if len(names) > 1 else names[0]
    lines += [f"## Passing with {ref}, failing with {ours}", ""]
    count = 0
    for program in sorted(results):
        mine, theirs = results[program][ours], results[program][ref]
        worse = [(k, v) for k, v in sorted(mine.failures.items()) if k in theirs.passes]
        if mine.status and not theirs.status:
            worse.append((0, mine.status))
        for number, text in worse:
            lines.append(f"- `{program}` #{number}: {text}")
            count += 1
    if not count:
        lines.append("(none)")
    lines += ["", f"## Failing with {ref}, passing with {ours}", ""]
    count = 0
    for program in sorted(results):
        mine, theirs = results[program][ours], results[program][ref]
        for number, text in sorted(theirs.failures.items()):
            if number in mine.passes:
                lines.append(f"- `{program}` #{number}: {text}")
                count += 1
    if not count:
        lines.append("(none)")
    return "\n".join(lines) + "\n"


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return "not installed"
    return out.splitlines()[0].strip() if out else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, type=Path, help="a runtime-tools checkout")
    parser.add_argument("--report", type=Path, help="write the Markdown report here")
    parser.add_argument("--dockyard-runtime", default=shutil.which("dockyard-runtime") or str(REPO / ".venv/bin/dockyard-runtime"))
    parser.add_argument("--runc", default=shutil.which("runc") or "runc")
    parser.add_argument("-k", dest="only", help="only programs whose name contains this")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the validation programs start real containers", file=sys.stderr)
        return 2
    source = args.source.resolve()
    programs = [p for p in build(source) if not args.only or args.only in p.stem]
    runtimes = {"dockyard-runtime": args.dockyard_runtime, "runc": args.runc}
    versions = {n: _version([path, "--version"]) for n, path in runtimes.items()}
    versions["go"] = _version(["go", "version"])
    sys.path.insert(0, str(REPO / "src"))
    from dockyard.shim.inproc import native_front_launcher

    launcher = native_front_launcher(args.dockyard_runtime)
    versions["dockyard-runtime"] += (f", native front handing over to `{launcher}`" if launcher
                                     else ", without the native front")
    revision = (source / ".dockyard-revision").read_text().strip() if (source / ".dockyard-revision").exists() else "(checkout)"
    results: dict[str, dict[str, Outcome]] = {}
    for program in programs:
        results[program.stem] = {}
        for name, path in runtimes.items():
            o = run(program, path, source)
            results[program.stem][name] = o
            print(f"{program.stem:40} {name:17} {o.passed:4} ok {o.failed:3} failed {o.skipped:4} skipped {o.status}",
                  flush=True)
    text = report(results, runtimes, versions, source, revision)
    if args.report:
        args.report.write_text(text)
        print(f"report written to {args.report}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
