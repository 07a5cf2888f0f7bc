"""kill -9 during a load, a commit or a layer unpack; then the store recovers and works.

Each operation runs in a child process that is killed at a random moment; the test then
opens the store as a restarted daemon would (recovery), and checks that it is consistent,
that no partial image is listed, and that the same operation then succeeds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dockyard.image.store import ImageStore
from image_helpers import synthetic_docker_archive

pytestmark = [pytest.mark.root, pytest.mark.slow]

_LOAD = """
from dockyard.image.store import ImageStore
from dockyard.image import archive
store = ImageStore(ROOT)
with open(ARCHIVE, "rb") as fh:
    archive.load(store, fh)
"""

_COMMIT = """
import os
from dockyard.image.store import ImageStore
from dockyard.image.containers import commit
store = ImageStore(ROOT)
if not store.snapshots.exists("ctr"):
    store.prepare_container("ctr", TAG)
    upper = store.snapshots.upper_dir("ctr")
    for i in range(300):
        with open(os.path.join(upper, f"file{i}"), "wb") as fh:
            fh.write(os.urandom(64 << 10))
commit(store, "ctr", reference="committed:1")
"""


def _child(script: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    code = "".join(f"{k} = {v!r}\n" for k, v in env.items()) + textwrap.dedent(script)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _duration(script: str, env: dict[str, str]) -> float:
    """How long the operation takes when nobody kills it (start-up included)."""
    start = time.monotonic()
    proc = _child(script, env)
    _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()
    return time.monotonic() - start


def _run_killed(script: str, env: dict[str, str], delay: float) -> bool:
    """Run the script in a child and SIGKILL it after `delay`; whether it was killed before finishing."""
    proc = _child(script, env)
    time.sleep(delay)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    assert killed or proc.returncode == 0, err.decode()
    return killed


def _assert_consistent(root: str) -> ImageStore:
    store = ImageStore(root)  # opening the store recovers it
    assert store.check(verify_blobs=True) == []
    assert not any(s.key.startswith("extract-") for s in store.snapshots.walk())
    assert os.listdir(store.content.ingest_dir) == []
    return store


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory) -> tuple[str, str, float]:
    """A ~60 MB, 5-layer archive, and how long a load of it takes here."""
    base = tmp_path_factory.mktemp("crash")
    path = str(base / "image.tar")
    tag = synthetic_docker_archive(path, layers=5, files_per_layer=200, file_size=64 << 10)
    return path, tag, _duration(_LOAD, {"ROOT": str(base / "timing"), "ARCHIVE": path})


# kill at these fractions of the time a load takes: while ingesting, while unpacking, near the end
@pytest.mark.parametrize("fraction", [0.25, 0.45, 0.6, 0.75, 0.9])
def test_kill_during_load(tmp_path, big_archive, fraction) -> None:
    archive_path, tag, duration = big_archive
    root = str(tmp_path / "root")
    _run_killed(_LOAD, {"ROOT": root, "ARCHIVE": archive_path}, duration * fraction)
    store = _assert_consistent(root)
    listed = store.list()
    assert listed == [] or [i.repo_tags for i in listed] == [(f"docker.io/library/{tag}",)]
    # the next operation succeeds
    from dockyard.image import archive

    with open(archive_path, "rb") as fh:
        archive.load(store, fh)
    assert store.check() == [] and store.get(tag).size > 0
    store.close()


@pytest.mark.parametrize("fraction", [0.5, 0.7, 0.85, 0.95])
def test_kill_during_commit(tmp_path, fraction) -> None:
    archive_path = str(tmp_path / "image.tar")
    tag = synthetic_docker_archive(archive_path, layers=1, files_per_layer=20)
    from dockyard.image import archive
    from dockyard.image.containers import commit

    roots = []
    for name in ("timing", "root"):
        store = ImageStore(str(tmp_path / name))
        with open(archive_path, "rb") as fh:
            archive.load(store, fh)
        store.close()
        roots.append(str(tmp_path / name))
    duration = _duration(_COMMIT, {"ROOT": roots[0], "TAG": tag})
    _run_killed(_COMMIT, {"ROOT": roots[1], "TAG": tag}, duration * fraction)
    store = _assert_consistent(roots[1])
    committed = [i for i in store.list() if "docker.io/library/committed:1" in i.repo_tags]
    assert len(committed) <= 1
    if not committed:
        if not store.snapshots.exists("ctr"):
            store.prepare_container("ctr", tag)
        commit(store, "ctr", reference="committed:1")
    assert store.check() == [] and len(store.details("committed:1").config.diff_ids) == 2
    store.remove_container("ctr")
    store.close()
    timing = ImageStore(roots[0])
    timing.remove_container("ctr")
    timing.close()
