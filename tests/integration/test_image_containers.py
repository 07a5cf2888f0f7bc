"""import, export, commit and diff: images from tarballs and from containers."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest

from dockyard.errors import InvalidArgument
from dockyard.image.containers import commit, diff, export_snapshot
from dockyard.image.embedded import get_or_embedded
from dockyard.image.importer import import_rootfs
from dockyard.image.store import ImageStore
from dockyard.snapshot import HostileLayer
from hostile_tars import f, sym, tar
from image_helpers import chroot, fingerprint, image_root

pytestmark = pytest.mark.root


@pytest.fixture
def store(tmp_path) -> ImageStore:
    s = ImageStore(str(tmp_path / "root"))
    yield s
    s.close()


def _busybox_rootfs_tar(store: ImageStore) -> bytes:
    get_or_embedded(store, "busybox")
    store.prepare_container("exp", "busybox")
    out = io.BytesIO()
    export_snapshot(store, "exp", out)
    store.remove_container("exp")
    return out.getvalue()


def test_import_with_changes_runs(store, tmp_path) -> None:
    rootfs = gzip.compress(_busybox_rootfs_tar(store))
    img = import_rootfs(store, io.BytesIO(rootfs), reference="imported:1",
                        changes=['CMD ["echo", "imported"]', "ENV GREETING=hi", "WORKDIR /tmp", "EXPOSE 8080"])
    details = store.details("imported:1")
    cfg = details.container_config
    assert cfg["Cmd"] == ["echo", "imported"] and cfg["Env"] == ["GREETING=hi"] and cfg["WorkingDir"] == "/tmp"
    assert details.config.raw["comment"] == "Imported from -" and details.config.history[0]["comment"] == "Imported from -"
    assert len(details.config.diff_ids) == 1 and img.repo_tags == ("docker.io/library/imported:1",)
    with image_root(store, "imported:1", str(tmp_path / "mnt")) as root:
        assert chroot(root, "/bin/sh", "-c", "echo $((6*7))").stdout == "42\n"


def test_import_refuses_hostile_and_broken_tarballs(store) -> None:
    get_or_embedded(store, "busybox")
    before = fingerprint(store)
    with pytest.raises(HostileLayer):
        import_rootfs(store, io.BytesIO(tar(sym("evil", "/etc"), f("evil/x"))), reference="evil")
    assert fingerprint(store) == before
    with pytest.raises(InvalidArgument, match="damaged or truncated"):
        import_rootfs(store, io.BytesIO(gzip.compress(tar(f("a", b"x" * 5000)))[:60]), reference="cut")
    assert fingerprint(store) == before


def test_export_is_the_merged_filesystem(store) -> None:
    get_or_embedded(store, "busybox")
    store.prepare_container("c", "busybox")
    upper = store.snapshots.upper_dir("c")
    with open(os.path.join(upper, "new"), "w") as fh:
        fh.write("n")
    os.makedirs(os.path.join(upper, "etc"))
    os.mknod(os.path.join(upper, "etc/passwd"), 0o020000 | 0o600, os.makedev(0, 0))  # a whiteout: deleted
    out = io.BytesIO()
    export_snapshot(store, "c", out)
    store.remove_container("c")
    names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
    assert "bin/busybox" in names and "new" in names and "etc/group" in names and "etc/passwd" not in names
    assert not any(".wh." in n for n in names)


def test_commit_and_diff(store, tmp_path) -> None:
    base = get_or_embedded(store, "busybox")
    store.prepare_container("c", "busybox")
    upper = store.snapshots.upper_dir("c")
    # what a container does, written the way overlayfs writes it into the upper dir
    os.makedirs(os.path.join(upper, "srv"))
    with open(os.path.join(upper, "srv/app.sh"), "w") as fh:
        fh.write("echo app\n")
    os.makedirs(os.path.join(upper, "etc"))
    os.mknod(os.path.join(upper, "etc/group"), 0o020000 | 0o600, os.makedev(0, 0))  # a whiteout: deleted
    changes = {str(c) for c in diff(store, "c")}
    assert changes >= {"A /srv", "A /srv/app.sh", "D /etc/group", "C /etc"}
    img = commit(store, "c", reference="committed:1", changes=["CMD sh /srv/app.sh"], author="tester",
                 message="my commit", created_by="sh -c setup", container_id="c")
    store.remove_container("c")
    details = store.details("committed:1")
    assert img.parent == str(base.id)
    assert details.config.raw["author"] == "tester" and details.config.raw["comment"] == "my commit"
    assert details.config.history[-1]["created_by"] == "sh -c setup"
    assert details.container_config["Cmd"] == ["/bin/sh", "-c", "sh /srv/app.sh"]
    assert len(details.config.diff_ids) == 2
    history = store.history("committed:1")
    assert history[0].comment == "my commit" and history[1].id == "<missing>"
    with image_root(store, "committed:1", str(tmp_path / "mnt")) as root:
        assert chroot(root, "sh", "/srv/app.sh").stdout == "app\n"
        assert not os.path.exists(os.path.join(root, "etc/group"))
