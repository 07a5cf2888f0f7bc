"""Network throughput and latency: dockyardd vs the real Docker engine, each inside its own
network namespace made here (nothing leaves them).

For each engine: a user-defined bridge network with a server container (busybox httpd serving a
256 MiB file) and a client container, which fetches it with busybox wget into /dev/null:

- container to container, by name, over the user-defined network;
- through a published port: from the engine's namespace to its bridge gateway address
  (DNAT in the kernel for both engines);

and latency: 20 `wget` round trips to a busybox httpd in one `docker exec` (per-request time).

    sudo .venv/bin/python bench/network.py [--runs 7] [--warmup 1] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
sys.path.insert(0, str(BENCH_DIR.parent / "tests" / "acceptance"))

from daemon_run import DOCKER, DOCKYARD, finish, run_cli, versions  # noqa: E402
from harness import BenchmarkError, Candidate, Context, add_common_arguments, record_results, run_benchmark  # noqa: E402
from docker_engine import DockerEngine, start_engine  # noqa: E402
from dockyardd import Dockyardd, start_dockyardd  # noqa: E402

MIB = 256
SERVE = (f"mkdir -p /www && echo pong > /www/p && dd if=/dev/zero of=/www/big bs=1M count={MIB} 2>/dev/null "
         "&& touch /www/ready && exec httpd -f -p 80 -h /www")


def setup(engine: DockerEngine, tag: str) -> str:
    run_cli(engine, "network", "create", "benchnet")
    run_cli(engine, "run", "-d", "--name", "web", "--network", "benchnet", "-p", "8080:80", "busybox", "sh", "-c",
            SERVE)
    run_cli(engine, "run", "-d", "--name", "client", "--network", "benchnet", "busybox", "sleep", "100000")
    info = json.loads(run_cli(engine, "network", "inspect", "benchnet"))[0]
    gateway: str = info["IPAM"]["Config"][0]["Gateway"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            run_cli(engine, "exec", "web", "test", "-f", "/www/ready")
            break
        except Exception:  # noqa: BLE001 - not there yet
            time.sleep(0.2)
    return gateway


def c2c(engine: DockerEngine) -> Candidate:
    def timed(ctx: Context) -> None:
        out = run_cli(engine, "exec", "client", "sh", "-c", "wget -qO- http://web/big | wc -c")
        if out.strip() != str(MIB << 20):
            raise BenchmarkError(f"fetched {out.strip()} bytes, not {MIB << 20}")
    return Candidate(engine.name, timed)  # type: ignore[attr-defined]


def published(engine: DockerEngine, ns: str, gateway: str) -> Candidate:
    def timed(ctx: Context) -> None:
        cmd = f"busybox wget -qO- http://{gateway}:8080/big | wc -c"
        out = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "sh", "-c", cmd], check=True, timeout=120,
                             capture_output=True, text=True).stdout
        if out.strip() != str(MIB << 20):
            raise BenchmarkError(f"fetched {out.strip()} bytes through the published port, not {MIB << 20}")
    return Candidate(engine.name, timed)  # type: ignore[attr-defined]


def latency(engine: DockerEngine) -> Candidate:
    def timed(ctx: Context) -> None:
        run_cli(engine, "exec", "client", "sh", "-c", "for i in $(seq 20); do wget -qO- http://web/p >/dev/null; done")
    return Candidate(engine.name, timed)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.set_defaults(baseline=DOCKER, runs=7, warmup=1)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("network.py needs root", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-net-", dir="/var/tmp"))
    namespaces = {DOCKYARD: f"dyb-dy-{os.getpid()}", DOCKER: f"dyb-dk-{os.getpid()}"}
    for ns in namespaces.values():
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    dy: Dockyardd | None = None
    dk: DockerEngine | None = None
    rc = 1
    try:
        dy = start_dockyardd(work / "dockyardd", netns=namespaces[DOCKYARD])
        run_cli(dy, "pull", "busybox")
        run_cli(dy, "save", "-o", str(work / "busybox.tar"), "busybox")
        dk = start_engine(work / "docker", netns=namespaces[DOCKER])
        run_cli(dk, "load", "-i", str(work / "busybox.tar"))
        dy.name, dk.name = DOCKYARD, DOCKER  # type: ignore[attr-defined]
        gateways = {DOCKYARD: setup(dy, "dy"), DOCKER: setup(dk, "dk")}
        tools = versions(dy, dk)
        results = []
        for key, title, cands in (
            ("net-c2c", f"{MIB} MiB container to container over a user-defined bridge (HTTP)", [c2c(dy), c2c(dk)]),
            ("net-published", f"{MIB} MiB from a published port to the engine's namespace (DNAT)",
             [published(dy, namespaces[DOCKYARD], gateways[DOCKYARD]),
              published(dk, namespaces[DOCKER], gateways[DOCKER])]),
            ("net-latency", "20 HTTP requests container to container by name (busybox wget, one exec)",
             [latency(dy), latency(dk)]),
        ):
            result = run_benchmark(f"{title}: dockyardd vs Docker engine", cands, runs=args.runs,
                                   warmup=args.warmup, baseline=args.baseline, tools=tools, key=key)
            result.notes.append("each engine in its own network namespace made by the benchmark, with its own "
                                "bridge and rules (Docker: iptables; dockyardd: nftables); time ratio < 1 means "
                                "dockyardd is faster, throughput ratio is its inverse")
            result.notes.append("target (issue): >= 1.0x Docker's throughput")
            print(result.text())
            results.append(result)
        rc = record_results(results, args)
    finally:
        finish(dy, dk, work)
        for ns in namespaces.values():
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
