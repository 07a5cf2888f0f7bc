"""Images move between Dockyard and the real Docker engine, both ways, and run."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from dockyard.image import archive
from dockyard.image.containers import commit, export_snapshot
from dockyard.image.embedded import get_or_embedded
from dockyard.image.store import ImageStore
from image_docker import PrivateDockerd

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.slow]

_DOCKERFILE = """FROM busybox:latest
RUN mkdir -p /data/sub /data/keep && echo hello > /data/sub/file && ln /data/sub/file /data/hard \\
 && ln -s /data/sub/file /data/soft && chmod 4711 /data/keep && chown 1000:1000 /data/keep && rm /etc/group
RUN rm -rf /data/sub && mkdir /data/sub && echo new > /data/sub/new && mkfifo /data/fifo
RUN setfattr -n user.color -v blue /data/hard 2>/dev/null || true
ENV FOO=bar
CMD ["cat", "/data/hard"]
"""


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory):
    if not PrivateDockerd.available():
        pytest.skip("dockerd is not installed")
    d = PrivateDockerd(str(tmp_path_factory.mktemp("dockerd")))
    d.start()
    yield d
    d.stop()


@pytest.fixture
def store(tmp_path) -> ImageStore:
    s = ImageStore(str(tmp_path / "dockyard"))
    yield s
    s.close()


def _listing(tar_bytes: bytes) -> dict[str, tuple]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as t:
        for m in t.getmembers():
            name = m.name.rstrip("/")
            if name.startswith(".dockerenv") or name.split("/")[0] in ("proc", "sys", "dev", "etc") and name != "etc/passwd":
                continue  # the engines differ in what they put there for a container
            out[name] = (m.type, m.mode & 0o7777, m.uid, m.gid, m.size if m.isreg() else 0, m.linkname if m.issym() else "")
    return out


def test_dockyard_image_runs_in_docker(dockerd, store, tmp_path) -> None:
    get_or_embedded(store, "busybox")
    store.prepare_container("c", "busybox")
    upper = store.snapshots.upper_dir("c")
    os.makedirs(os.path.join(upper, "app"))
    with open(os.path.join(upper, "app/hello"), "w") as fh:
        fh.write("hello from dockyard\n")
    committed = commit(store, "c", reference="dockyard/child:1", changes=['CMD ["cat", "/app/hello"]'])
    store.remove_container("c")
    path = str(tmp_path / "out.tar")
    with open(path, "wb") as fh:
        archive.save(store, ["dockyard/child:1", "busybox"], fh)
    dockerd.docker("load", "-i", path)
    ids = dockerd.docker("image", "inspect", "-f", "{{.Id}}", "dockyard/child:1").stdout.strip()
    assert ids == str(committed.id)
    run = dockerd.docker("run", "--rm", "--network", "none", "dockyard/child:1")
    assert run.stdout == "hello from dockyard\n"
    assert dockerd.docker("run", "--rm", "--network", "none", "busybox", "echo", "ok").stdout == "ok\n"
    dockerd.wait_idle()


def test_docker_image_loads_into_dockyard_and_runs(dockerd, store, tmp_path) -> None:
    get_or_embedded(store, "busybox")
    bb = str(tmp_path / "bb.tar")
    with open(bb, "wb") as fh:
        archive.save(store, ["busybox"], fh)
    dockerd.docker("load", "-i", bb)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(_DOCKERFILE)
    dockerd.docker("build", "--network", "none", "-t", "docker-built:1", str(ctx), timeout=300)
    saved = str(tmp_path / "docker-saved.tar")
    dockerd.docker("save", "-o", saved, "docker-built:1")
    with open(saved, "rb") as fh:
        loaded = archive.load(store, fh)
    docker_id = dockerd.docker("image", "inspect", "-f", "{{.Id}}", "docker-built:1").stdout.strip()
    assert [str(i.image.id) for i in loaded] == [docker_id] and loaded[0].names == ["docker-built:1"]
    assert store.details("docker-built:1").container_config["Cmd"] == ["cat", "/data/hard"]
    # run it with dockyard-runtime, the image's own Cmd, on the container's overlay snapshot
    store.prepare_container("run", "docker-built:1")
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    from dockyard.runtime.defaults import default_spec
    from dockyard.snapshot import mounted

    runtime = os.path.join(os.path.dirname(sys.executable), "dockyard-runtime")
    with mounted(store.snapshots.mounts("run"), mnt) as root:
        spec = default_spec(store.details("docker-built:1").container_config["Cmd"], terminal=False)
        spec["root"] = {"path": root, "readonly": False}
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(spec))
        out = subprocess.run([runtime, "--root", str(tmp_path / "rt"), "run", "--bundle", str(bundle), "docker-built"],
                             capture_output=True, text=True, timeout=60)
        assert (out.returncode, out.stdout) == (0, "hello\n"), out.stderr
    # the same filesystem as Docker's: compare `docker export` with Dockyard's export
    ours = io.BytesIO()
    export_snapshot(store, "run", ours)
    store.remove_container("run")
    cid = dockerd.docker("create", "--network", "none", "docker-built:1").stdout.strip()
    theirs = str(tmp_path / "docker-export.tar")
    dockerd.docker("export", "-o", theirs, cid)
    dockerd.docker("rm", cid)
    dockerd.wait_idle()
    with open(theirs, "rb") as fh:
        docker_view = _listing(fh.read())
    our_view = _listing(ours.getvalue())
    assert our_view == docker_view
    assert "data/sub/new" in our_view and "data/sub/file" not in our_view
