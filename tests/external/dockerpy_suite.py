"""Run docker-py 7.1.0's integration tests against a real Docker engine and against dockyardd.

    sudo .venv/bin/python tests/external/dockerpy_suite.py            # both engines, in parallel
    sudo .venv/bin/python tests/external/dockerpy_suite.py --engine dockyardd -k exec

Each engine is started privately (tests/acceptance/docker_engine.py and dockyardd.py: own data
and exec roots, own socket, no bridge, no iptables), given the same images, and the vendored
docker-py tests (tests/external/dockerpy-7.1.0, Apache-2.0) run against it with
DOCKER_HOST=unix://<its socket>. Images: dockyardd pulls busybox from its embedded source; that
image is `docker save`d from dockyardd and `docker load`ed into the Docker engine; both then tag
it as docker-py's test images (alpine:3.10 = TEST_IMG, alpine:latest). There is no registry
access here, so the tests that pull from Docker Hub fail on both engines.

Per-test outcomes come from pytest's junit XML (kept under --work); the counts table and the
list of tests passing on Docker but not on dockyardd go to bench/DOCKERPY.md (--report). Text
after the ANALYSIS_MARKER line in an existing report is kept (hand-written causes).

Not collected by the project's own pytest run: tests/external/conftest.py ignores this
directory, and this file's name does not start with test_.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENDORED = HERE / "dockerpy-7.1.0"
ACCEPTANCE = REPO / "tests" / "acceptance"
sys.path.insert(0, str(ACCEPTANCE))

from docker_engine import EngineError, remove_engine_dir, start_engine, stop_engine  # noqa: E402
from dockyardd import start_dockyardd, stop_dockyardd  # noqa: E402

DOCKERPY_VERSION = "7.1.0"
TEST_FILES = [
    "api_container_test.py",
    "api_image_test.py",
    "api_exec_test.py",
    "api_client_test.py",
    "client_test.py",
    "models_containers_test.py",
    "models_images_test.py",
    "api_volume_test.py",
    "models_volumes_test.py",
    "api_network_test.py",
    "models_networks_test.py",
]
# Tests not run on either engine, and why. (Network tests run: each engine has a network
# namespace of its own, made by this script, for its bridges and rules.)
DESELECTED: dict[str, str] = {}
IMAGE_SOURCE = "busybox:latest"
TEST_TAGS = ["alpine:3.10", "alpine:latest"]
ENGINES = ["docker", "dockyardd"]
ANALYSIS_MARKER = "<!-- analysis: kept by dockerpy_suite.py -->"


def log(msg: str) -> None:
    print(f"[dockerpy_suite {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- engines


def netns_name(engine: str) -> str:
    return f"dyt-dp-{engine[:6]}-{os.getpid()}"


def start(engine: str, work: Path):
    """The engine in a network namespace of its own (its bridges and rules stay there)."""
    d = work / engine
    ns = netns_name(engine)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    if engine == "docker":
        return start_engine(d, netns=ns)
    return start_dockyardd(d, netns=ns)


def stop(engine: str, handle) -> list[str]:
    if engine == "docker":
        problems = stop_engine(handle)
        remove_engine_dir(handle)
    else:
        problems = stop_dockyardd(handle)
    subprocess.run(["ip", "netns", "delete", netns_name(engine)], capture_output=True)
    return problems


def prepare_images(daemons: dict, work: Path) -> dict[str, str]:
    """busybox from dockyardd's embedded source, loaded into Docker; both tagged as the test images.
    Returns engine -> image id."""
    tar = work / "busybox.tar"
    source = daemons.get("dockyardd")
    own = None
    if source is None:  # only Docker asked for: take the image from a short-lived dockyardd
        own = source = start_dockyardd(work / "image-source")
    try:
        source.docker("pull", IMAGE_SOURCE, timeout=300).check()
        if "docker" in daemons:
            source.docker("save", "-o", str(tar), IMAGE_SOURCE, timeout=300).check()
    finally:
        if own is not None:
            problems = stop_dockyardd(own)
            if problems:
                raise EngineError(f"image-source dockyardd left: {problems}")
    ids = {}
    for name, daemon in daemons.items():
        if name == "docker":
            daemon.docker("load", "-i", str(tar), timeout=300).check()
        for tag in TEST_TAGS:
            daemon.docker("tag", IMAGE_SOURCE, tag).check()
        ids[name] = daemon.inspect(IMAGE_SOURCE)["Id"]
    return ids


def versions(engine: str, daemon) -> dict[str, str]:
    result = daemon.docker("version", "--format", "{{json .Server}}")
    try:
        server = json.loads(result.stdout)
        return {"version": server.get("Version", "?"), "api": server.get("ApiVersion", "?")}
    except (ValueError, AttributeError):
        return {"version": f"? ({result.stderr.strip()[:100]})", "api": "?"}


# ---------------------------------------------------------------------------- pytest


def run_pytest(engine: str, daemon, work: Path, args: argparse.Namespace) -> Path:
    xml = work / f"{engine}.xml"
    out = work / f"{engine}.log"
    env = daemon.env()
    env["PYTHONPATH"] = os.pathsep.join([str(HERE / "stubs"), str(HERE)])
    env["DOCKERPY_TEST_TIMEOUT"] = str(args.test_timeout)
    env.pop("DOCKER_TEST_API_VERSION", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    argv = ["timeout", "-k", "30", str(args.run_timeout), sys.executable, "-m", "pytest",
            "-c", str(VENDORED / "pytest.ini"), "--rootdir", str(VENDORED), "--confcutdir", str(VENDORED),
            "-p", "no:cacheprovider", "-p", "dockerpy_timeout", "-o", "junit_logging=no",
            f"--junitxml={xml}", "-rA", "-v"]
    for nodeid in DESELECTED:
        argv += ["--deselect", nodeid]
    if args.k:
        argv += ["-k", args.k]
    argv += [f"tests/integration/{f}" for f in args.files]
    log(f"{engine}: pytest -> {out}")
    with open(out, "wb") as f:
        rc = subprocess.run(argv, cwd=VENDORED, env=env, stdout=f, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL).returncode
    log(f"{engine}: pytest exited {rc}")
    if rc == 124:
        with open(out, "ab") as f:
            f.write(f"\n*** dockerpy_suite: whole run killed after {args.run_timeout}s ***\n".encode())
    return xml


def parse_junit(xml: Path) -> dict[str, tuple[str, str]]:
    """nodeid -> (outcome, message); outcome in passed/failed/error/skipped."""
    results: dict[str, tuple[str, str]] = {}
    if not xml.exists():
        return results
    for case in ET.parse(xml).getroot().iter("testcase"):
        cls = case.get("classname", "")
        parts = cls.split(".")
        # tests.integration.api_container_test.CreateContainerTest
        mod = "/".join(parts[:3]) + ".py" if len(parts) >= 3 else cls
        nodeid = f"{mod}::{'::'.join(parts[3:])}::{case.get('name')}" if len(parts) > 3 else f"{mod}::{case.get('name')}"
        tags = {child.tag: child for child in case}
        if "failure" in tags:
            outcome, el = "failed", tags["failure"]
        elif "error" in tags:
            outcome, el = "error", tags["error"]
        elif "skipped" in tags:
            outcome, el = "skipped", tags["skipped"]
        else:
            outcome, el = "passed", None
        msg = ""
        if el is not None:
            msg = (el.get("message") or "").strip()
            if not msg and (el.text or "").strip():
                msg = (el.text or "").strip().splitlines()[-1]
        results[nodeid] = (outcome, " ".join(msg.split())[:400])
    return results


# ---------------------------------------------------------------------------- report


def counts_table(all_results: dict[str, dict[str, tuple[str, str]]], files: list[str]) -> str:
    engines = [e for e in ENGINES if e in all_results]
    head = "| test file | " + " | ".join(f"{e} pass / fail / skip / error" for e in engines) + " |"
    lines = [head, "|---|" + "---|" * len(engines)]
    totals = {e: Counter() for e in engines}
    for f in files:
        row = [f]
        for e in engines:
            c = Counter(o for nid, (o, _) in all_results[e].items() if nid.split("::")[0].endswith("/" + f))
            totals[e].update(c)
            row.append(f"{c['passed']} / {c['failed']} / {c['skipped']} / {c['error']}")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("| **total** | " + " | ".join(
        f"**{totals[e]['passed']} / {totals[e]['failed']} / {totals[e]['skipped']} / {totals[e]['error']}**"
        for e in engines) + " |")
    return "\n".join(lines)


def write_report(path: Path, all_results, meta: dict, args: argparse.Namespace) -> None:
    kept = ""
    if path.exists():
        old = path.read_text()
        if ANALYSIS_MARKER in old:
            kept = old.split(ANALYSIS_MARKER, 1)[1]
    cmd = "sudo .venv/bin/python tests/external/dockerpy_suite.py" + (
        f" --engine {args.engine}" if args.engine != "both" else "") + (f" -k '{args.k}'" if args.k else "") + (
        f" --report {args.report}" if args.report else "")
    out = [f"# docker-py {DOCKERPY_VERSION} integration tests: Docker vs dockyardd", "",
           f"Run: {meta['date']} on one machine, same images on both engines "
           f"(dockyardd's embedded busybox, `docker save`d into Docker, tagged "
           f"{', '.join(TEST_TAGS)}; image id {meta.get('image_ids', {})}).", ""]
    for e, v in meta.get("versions", {}).items():
        out.append(f"- {e}: server {v['version']}, API {v['api']}")
    out += [f"- docker-py {DOCKERPY_VERSION} (tests vendored in tests/external/dockerpy-7.1.0), "
            f"pytest {meta.get('pytest', '?')}, Python {sys.version.split()[0]}",
            f"- per-phase test timeout {args.test_timeout}s, whole run timeout {args.run_timeout}s; "
            f"no registry / Docker Hub access on this machine",
            "", f"Reproduce: `{cmd}` (as root, from the repository root, about 3 minutes; the text after the"
            " analysis marker at the end of this file is kept when it is rewritten)", "",
            "## Counts (passed / failed / skipped / error)", "",
            counts_table(all_results, args.files), "",
            "From pytest's junit XML: `skipped` includes xfail, an xpass counts as passed. docker-py "
            "negotiates the API version with each engine (`version='auto'`).", "",
            "Left behind after stopping the engines (must be empty): "
            f"{meta.get('leftovers', 'not recorded')}", ""]
    out += ["Deselected on both engines:", ""]
    out += [f"- `{n.split('::')[-1]}`: {why}" for n, why in DESELECTED.items()]
    if "docker" in all_results and "dockyardd" in all_results:
        d, y = all_results["docker"], all_results["dockyardd"]
        regress = sorted(n for n, (o, _) in d.items() if o == "passed" and y.get(n, ("missing", ""))[0] != "passed")
        better = sorted(n for n, (o, _) in y.items() if o == "passed" and d.get(n, ("missing", ""))[0] != "passed")
        out += ["", f"## Pass on Docker, not on dockyardd ({len(regress)}; raw, one line per test)", ""]
        by_file = defaultdict(list)
        for n in regress:
            by_file[n.split("::")[0].rsplit("/", 1)[-1]].append(n)
        for f, names in by_file.items():
            out.append(f"### {f}")
            out.append("")
            for n in names:
                o, msg = y.get(n, ("missing", ""))
                out.append(f"- `{n.split('::', 1)[1]}` ({o}): {msg[:300]}")
            out.append("")
        out += [f"## Pass on dockyardd, not on Docker ({len(better)})", ""]
        for n in better:
            o, msg = d.get(n, ("missing", ""))
            out.append(f"- `{n.split('::', 1)[1]}` (docker {o}): {msg[:200]}")
        out.append("")
    text = "\n".join(out) + "\n" + ANALYSIS_MARKER + (kept if kept else "\n")
    path.write_text(text)
    log(f"report written to {path}")


# ---------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engine", choices=["docker", "dockyardd", "both"], default="both")
    p.add_argument("--sequential", action="store_true", help="run the engines one after the other")
    p.add_argument("-k", help="pytest -k expression")
    p.add_argument("--files", nargs="+", default=TEST_FILES)
    p.add_argument("--test-timeout", type=int, default=30, help="seconds per test phase")
    p.add_argument("--run-timeout", type=int, default=2400, help="seconds for a whole pytest run")
    p.add_argument("--work", type=Path, help="directory for engine state, junit XML and logs")
    p.add_argument("--report", type=Path, help="write the markdown report here (e.g. bench/DOCKERPY.md)")
    p.add_argument("--from-xml", action="store_true", help="only rebuild the report from --work's XML")
    args = p.parse_args()
    if os.geteuid() != 0 and not args.from_xml:
        p.error("needs root (both engines run containers)")
    engines = ENGINES if args.engine == "both" else [args.engine]
    work = (args.work or Path(tempfile.mkdtemp(prefix="dockerpy-suite-"))).absolute()
    work.mkdir(parents=True, exist_ok=True)
    meta: dict = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    meta["pytest"] = subprocess.run([sys.executable, "-m", "pytest", "--version"], capture_output=True,
                                    text=True).stdout.strip().split()[-1:] or ["?"]
    meta["pytest"] = meta["pytest"][0]
    log(f"work directory {work}")

    if args.from_xml:
        meta.update(json.loads((work / "meta.json").read_text()))
    else:
        daemons: dict = {}
        leftovers: dict[str, list[str]] = {}
        try:
            for e in engines:
                log(f"starting {e}")
                daemons[e] = start(e, work)
            meta["image_ids"] = prepare_images(daemons, work)
            meta["versions"] = {e: versions(e, d) for e, d in daemons.items()}
            log(f"images ready: {meta['image_ids']}; versions {meta['versions']}")
            if args.sequential or len(engines) == 1:
                for e in engines:
                    run_pytest(e, daemons[e], work, args)
            else:
                threads = [threading.Thread(target=run_pytest, args=(e, daemons[e], work, args)) for e in engines]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        finally:
            for e, d in daemons.items():
                log(f"stopping {e}")
                leftovers[e] = stop(e, d)
                if leftovers[e]:
                    log(f"{e} LEFT BEHIND: {leftovers[e]}")
        meta["leftovers"] = leftovers
        (work / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")

    all_results = {e: parse_junit(work / f"{e}.xml") for e in engines if (work / f"{e}.xml").exists()}
    print(counts_table(all_results, args.files))
    if args.report:
        write_report(args.report, all_results, meta, args)
    bad = {e: left for e, left in meta.get("leftovers", {}).items() if left}
    if bad:
        log(f"leftovers after stopping: {bad}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
