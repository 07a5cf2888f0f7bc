"""Registry benchmarks (issue 5), side by side on loopback:

1. Pull of a ~200 MB multi-layer image from the same local registry (Debian's docker-registry):
   `docker pull` through dockyardd vs through the real Docker engine; the image is removed (and
   its layers garbage collected) after every run, so every run downloads and unpacks everything.
2. Registry server throughput: the same client fetching one 32 MB blob (GET) and asking for it
   (HEAD) repeatedly, from `dockyard registry serve` vs docker-registry.

    sudo .venv/bin/python bench/registry_pull.py [--runs 5] [--warmup 1] [--write]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO / "tests" / "acceptance"))

from harness import Candidate, Context, add_common_arguments, run_benchmark, tool_version, update_results  # noqa: E402
from image_load import make_archive  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    raise RuntimeError(f"registry on port {port} did not start")


def start_distribution(work: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _port()
    config = os.path.join(work, "distribution.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {work}/distribution}}\n"
                f"http: {{addr: 127.0.0.1:{port}}}\n")
    proc = subprocess.Popen(["docker-registry", "serve", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(port, proc)
    return proc, port


def start_dockyard_registry(work: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.registry", "serve", "--addr", f"127.0.0.1:{port}",
                             "--root", os.path.join(work, "dockyard-registry"), "--log-level", "error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(port, proc)
    return proc, port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _upload(port: int, name: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", f"/v2/{name}/blobs/uploads/")
    r = conn.getresponse()
    r.read()
    location = r.getheader("Location") or ""
    sep = "&" if "?" in location else "?"
    conn.request("PUT", f"{location}{sep}digest={digest}", body=data,
                 headers={"Content-Type": "application/octet-stream"})
    r = conn.getresponse()
    r.read()
    conn.close()
    if r.status != 201:
        raise RuntimeError(f"upload to port {port}: HTTP {r.status}")
    return digest


def blob_reader(port: int, path: str, method: str, count: int):  # type: ignore[no-untyped-def]
    def action(ctx: Context) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(count):
            conn.request(method, path)
            r = conn.getresponse()
            while r.read(1 << 20):
                pass
            if r.status != 200:
                raise RuntimeError(f"{method} {path}: HTTP {r.status}")
        conn.close()
    return action


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.set_defaults(runs=5, warmup=1)
    args = parser.parse_args()
    from docker_engine import import_busybox, start_engine, stop_engine
    from dockyardd import start_dockyardd, stop_dockyardd

    work = tempfile.mkdtemp(prefix="dockyard-bench-registry-", dir="/var/tmp")
    procs: list[subprocess.Popen[bytes]] = []
    engine = daemon = None
    try:
        dist, dist_port = start_distribution(work)
        procs.append(dist)
        ours, our_port = start_dockyard_registry(work)
        procs.append(ours)

        # 2. server throughput first (cheap)
        blob = os.urandom(32 << 20)
        paths = {}
        for port in (dist_port, our_port):
            paths[port] = f"/v2/bench/blob/blobs/{_upload(port, 'bench/blob', blob)}"
        for method, count in (("GET", 8), ("HEAD", 500)):
            result = run_benchmark(
                f"Registry server: {count} x {method} of a 32 MB blob, one keep-alive connection, loopback",
                [Candidate("docker-registry", blob_reader(dist_port, paths[dist_port], method, count)),
                 Candidate("dockyard registry", blob_reader(our_port, paths[our_port], method, count))],
                runs=args.runs * 2, warmup=args.warmup, baseline="docker-registry",
                tools={"docker-registry": tool_version(["docker-registry", "--version"])},
                key=f"registry-{method.lower()}")
            print(result.text())
            if args.write:
                update_results(args.results, result)

        # 1. pulls through the engines
        archive = os.path.join(work, "image.tar")
        size, count = make_archive(archive)
        image = f"127.0.0.1:{dist_port}/bench/pull:1"
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{archive}", f"docker://{image}"],
                       check=True, capture_output=True, timeout=900)
        engine = start_engine(Path(work) / "docker")
        import_busybox(engine)
        daemon = start_dockyardd(Path(work) / "dockyardd")

        def puller(target):  # type: ignore[no-untyped-def]
            def pull(ctx: Context) -> None:
                target.docker("pull", "-q", image, timeout=900).check()

            def clean(ctx: Context) -> None:
                target.docker("rmi", image, timeout=300).check()
                os.sync()
            return pull, clean

        pull_docker, clean_docker = puller(engine)
        pull_ours, clean_ours = puller(daemon)
        result = run_benchmark(
            f"docker pull of a {size / 1e6:.0f} MB, {count}-layer image from a loopback docker-registry",
            [Candidate("docker (dockerd)", pull_docker, teardown=clean_docker),
             Candidate("dockyardd", pull_ours, teardown=clean_ours)],
            runs=args.runs, warmup=args.warmup, baseline="docker (dockerd)",
            tools={"docker": tool_version(["dockerd", "--version"])}, key="registry-pull")
        result.notes.append("the image is removed after every run (layers garbage collected), so each pull downloads, "
                            "verifies and unpacks everything; ratio < 1 means dockyardd is faster")
        print(result.text())
        if args.write:
            update_results(args.results, result)
    finally:
        if daemon is not None:
            problems = stop_dockyardd(daemon)
            if problems:
                print("dockyardd left:", problems, file=sys.stderr)
        if engine is not None:
            problems = stop_engine(engine)
            if problems:
                print("dockerd left:", problems, file=sys.stderr)
        for proc in procs:
            _stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
