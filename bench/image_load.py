"""Loading a ~200 MB multi-layer image (docker-archive) and unpacking its layers: Dockyard vs `docker load`.

The image is made on the spot from host directories, one layer each (a realistic mix of file
sizes), plus the embedded busybox layer:

    busybox rootfs | /usr/lib/python3.11 | /usr/lib/gcc | /usr/share/perl | /usr/share/zoneinfo

Both engines get the same docker-archive file. The timed unit is a load that ends with every
layer unpacked and the image recorded:
  - docker:     `docker load -i IMAGE.tar` on a private dockerd (overlay2), image removed after each run
  - dockyard:   `archive.load(store, file)` in this process (the engine function the daemon will
                call), image removed and garbage collected after each run
  - dockyard (no fsync): the same with durable=False, to show what the fsyncs cost
Every teardown ends with sync(2), so that no run pays for the writeback of the one before.

    sudo .venv/bin/python bench/image_load.py [--runs 5] [--warmup 1] [--write]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO / "tests" / "acceptance"))

from harness import Candidate, Context, add_common_arguments, run_benchmark, tool_version, update_results  # noqa: E402
from image_docker import PrivateDockerd  # noqa: E402

from dockyard.image import archive  # noqa: E402
from dockyard.image.embedded import write_busybox_tar  # noqa: E402
from dockyard.image.store import ImageStore  # noqa: E402

LAYER_DIRS = ["/usr/lib/python3.11", "/usr/lib/gcc", "/usr/share/perl", "/usr/share/zoneinfo"]
TAG = "bench/image-load:1"


def _dir_layer(path: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for name in [""] + sorted(filenames):
                full = os.path.join(dirpath, name) if name else dirpath
                if not (os.path.isfile(full) or os.path.isdir(full) or os.path.islink(full)):
                    continue
                t.add(full, arcname=full.lstrip("/"), recursive=False)
    return out.getvalue()


def make_archive(path: str) -> tuple[int, int]:
    """Write the benchmark image as a docker-archive; returns (bytes of layers, number of layers)."""
    import hashlib
    import json

    busybox = io.BytesIO()
    write_busybox_tar(busybox)
    layers = [busybox.getvalue()] + [_dir_layer(d) for d in LAYER_DIRS if os.path.isdir(d)]
    diff_ids, names = [], []
    with tarfile.open(path, "w") as out:
        for blob in layers:
            hexd = hashlib.sha256(blob).hexdigest()
            diff_ids.append(f"sha256:{hexd}")
            names.append(f"{hexd}/layer.tar")
            info = tarfile.TarInfo(names[-1])
            info.size = len(blob)
            out.addfile(info, io.BytesIO(blob))
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                             "rootfs": {"type": "layers", "diff_ids": diff_ids},
                             "history": [{"created_by": f"layer {i}"} for i in range(len(layers))]}).encode()
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        for name, data in ((config_name, config),
                           ("manifest.json", json.dumps([{"Config": config_name, "RepoTags": [TAG], "Layers": names}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return sum(len(b) for b in layers), len(layers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.set_defaults(runs=5, warmup=1)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="dockyard-bench-image-", dir="/var/tmp")
    dockerd = PrivateDockerd(os.path.join(work, "dockerd"))
    stores: dict[str, ImageStore] = {}
    try:
        image = os.path.join(work, "image.tar")
        size, count = make_archive(image)
        print(f"image: {count} layers, {size / 1e6:.0f} MB uncompressed", file=sys.stderr)

        def docker_load(ctx: Context) -> None:
            dockerd.docker("load", "-q", "-i", image, timeout=600)

        def docker_clean(ctx: Context) -> None:
            dockerd.docker("rmi", TAG)
            os.sync()  # the next run starts with no writeback of this one pending

        def dockyard(durable: bool):  # type: ignore[no-untyped-def]
            name = "durable" if durable else "fast"
            stores[name] = ImageStore(os.path.join(work, f"dockyard-{name}"), durable=durable)

            def load(ctx: Context) -> None:
                with open(image, "rb") as fh:
                    archive.load(stores[name], fh)

            def clean(ctx: Context) -> None:
                stores[name].remove(TAG)
                stores[name].gc()
                os.sync()
            return load, clean

        candidates = []
        if PrivateDockerd.available():
            dockerd.start()
            candidates.append(Candidate("docker load", docker_load, teardown=docker_clean))
        load, clean = dockyard(True)
        candidates.append(Candidate("dockyard", load, teardown=clean))
        load, clean = dockyard(False)
        candidates.append(Candidate("dockyard (no fsync)", load, teardown=clean))
        result = run_benchmark(f"Image load + unpack: {size / 1e6:.0f} MB, {count} layers (docker-archive)", candidates,
                               runs=args.runs, warmup=args.warmup, baseline=args.baseline or candidates[0].name,
                               tools={"docker": tool_version(["dockerd", "--version"])} if candidates[0].name == "docker load" else None,
                               key="image-load")
        result.notes.append(f"layers: busybox rootfs + {', '.join(LAYER_DIRS)}; storage: docker overlay2, dockyard overlay snapshots, "
                            "same filesystem (/var/tmp)")
        result.notes.append("dockyard keeps the layer blobs too (content store, for save/push); docker load keeps only the unpacked layers")
        print(result.text())
        if args.write:
            update_results(args.results, result)
    finally:
        for s in stores.values():
            s.close()
        dockerd.stop()
        subprocess.run(["rm", "-rf", work], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
