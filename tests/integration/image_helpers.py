"""Helpers for the image store tests: stores in temporary dirs, state fingerprints, mounted views."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from dockyard.image.store import ImageStore
from dockyard.snapshot import mounted


def fingerprint(store: ImageStore) -> tuple:
    """Everything observable about a store: images and names, blobs, snapshots."""
    images = sorted((str(i.id), i.repo_tags, i.repo_digests) for i in store.list())
    blobs = sorted(str(b.digest) for b in store.content.walk())
    snaps = sorted((s.key, s.kind) for s in store.snapshots.walk())
    return images, blobs, snaps


@contextmanager
def image_root(store: ImageStore, image: str, scratch: str) -> Iterator[str]:
    """The image's filesystem, mounted read-only at `scratch` for the block."""
    img = store.get(image)
    key = f"view-{img.id.short}-{os.getpid()}"
    store.snapshots.view(key, str(img.chain_id))
    os.makedirs(scratch, exist_ok=True)
    try:
        with mounted(store.snapshots.mounts(key), scratch) as root:
            yield root
    finally:
        store.snapshots.remove(key)


def chroot(root: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["chroot", root, *argv], capture_output=True, text=True, timeout=30)


def synthetic_docker_archive(path: str, layers: int = 3, files_per_layer: int = 200, file_size: int = 32 << 10,
                             seed: int = 1) -> str:
    """Write a docker-archive of a made-up multi-layer image (random file contents); returns its tag."""
    import hashlib
    import io
    import json
    import random
    import tarfile

    rng = random.Random(seed)
    diff_ids, layer_names = [], []
    with tarfile.open(path, "w") as out:
        for n in range(layers):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as layer:
                dir_info = tarfile.TarInfo(f"layer{n}")
                dir_info.type, dir_info.mode = tarfile.DIRTYPE, 0o755
                layer.addfile(dir_info)
                for i in range(files_per_layer):
                    data = rng.randbytes(rng.randint(file_size // 2, file_size * 3 // 2))
                    info = tarfile.TarInfo(f"layer{n}/f{i}")
                    info.size, info.mode = len(data), 0o644
                    layer.addfile(info, io.BytesIO(data))
            blob = buf.getvalue()
            diff_id = hashlib.sha256(blob).hexdigest()
            diff_ids.append(f"sha256:{diff_id}")
            name = f"{diff_id}/layer.tar"
            layer_names.append(name)
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            out.addfile(info, io.BytesIO(blob))
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                             "rootfs": {"type": "layers", "diff_ids": diff_ids},
                             "history": [{"created_by": f"layer {i}"} for i in range(layers)]}).encode()
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        tag = f"synthetic:{seed}"
        for name, data in ((config_name, config),
                           ("manifest.json", json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return tag
