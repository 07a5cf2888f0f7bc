"""The image store: embedded busybox, names, removal rules, garbage collection, sharing."""

from __future__ import annotations

import os

import pytest

from dockyard.errors import NotFound, WrongState
from dockyard.image.containers import commit
from dockyard.image.embedded import BUSYBOX_REF, ensure_embedded, get_or_embedded, is_embedded
from dockyard.image.store import RUNNING_LABEL, ImageStore
from dockyard.snapshot import mounted
from dockyard.types.reference import InvalidReference
from image_helpers import chroot, fingerprint, image_root

pytestmark = pytest.mark.root


@pytest.fixture
def store(tmp_path) -> ImageStore:
    s = ImageStore(str(tmp_path / "root"))
    yield s
    s.close()


def test_embedded_busybox_is_a_proper_image(store, tmp_path) -> None:
    img = get_or_embedded(store, "busybox")
    assert img.repo_tags == (BUSYBOX_REF,)
    details = store.details("busybox:latest")
    cfg = details.container_config
    assert cfg["Cmd"] == ["sh"] and any(e.startswith("PATH=") for e in cfg["Env"])
    assert details.config.platform.os == "linux"
    with image_root(store, "busybox", str(tmp_path / "mnt")) as root:
        assert chroot(root, "/bin/busybox", "echo", "hello").stdout == "hello\n"
        assert chroot(root, "sh", "-c", "id -un").stdout == "root\n"
        for name in ("passwd", "group", "nsswitch.conf", "hosts"):
            assert os.path.exists(os.path.join(root, "etc", name))
        assert os.stat(os.path.join(root, "bin/sh")).st_ino == os.stat(os.path.join(root, "bin/busybox")).st_ino
    assert is_embedded("docker.io/library/busybox") and not is_embedded("alpine")
    with pytest.raises(NotFound):
        get_or_embedded(store, "alpine")


def test_embedded_busybox_is_reproducible(tmp_path) -> None:
    a = ImageStore(str(tmp_path / "a"))
    b = ImageStore(str(tmp_path / "b"))
    assert ensure_embedded(a, "busybox").id == ensure_embedded(b, "busybox").id
    a.close()
    b.close()


def test_busybox_resolves_names_through_nss(store, tmp_path) -> None:
    """Static glibc busybox: wget finds a name from the rootfs /etc/hosts (NSS files) inside a chroot."""
    get_or_embedded(store, "busybox")
    store.prepare_container("nss", "busybox")
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    with mounted(store.snapshots.mounts("nss"), mnt) as root:
        with open(os.path.join(root, "etc/hosts"), "a") as fh:
            fh.write("127.0.0.1 dockyard-test-name.invalid\n")
        # port 1 on loopback refuses the connection: what matters is that the name was found
        found = chroot(root, "wget", "-O", "/dev/null", "http://dockyard-test-name.invalid:1/")
        assert "Connecting to dockyard-test-name.invalid:1 (127.0.0.1:1)" in found.stderr, found.stderr
        missing = chroot(root, "wget", "-O", "/dev/null", "http://no-such-name.invalid:1/")
        assert "bad address" in missing.stderr, missing.stderr
    store.remove_container("nss")


def test_lookup_by_name_id_and_prefix(store) -> None:
    img = get_or_embedded(store, "busybox")
    for text in ("busybox", "busybox:latest", "docker.io/library/busybox", str(img.id), img.id.encoded,
                 img.id.encoded[:12], f"sha256:{img.id.encoded[:8]}"):
        assert store.get(text).id == img.id, text
    with pytest.raises(NotFound, match="No such image: nothere"):
        store.get("nothere")
    with pytest.raises(InvalidReference):
        store.get("Bad:Name")


def test_tag_list_history(store) -> None:
    img = get_or_embedded(store, "busybox")
    ref = store.tag("busybox", "localhost:5000/team/bb")
    assert str(ref) == "localhost:5000/team/bb:latest"
    assert set(store.get(str(img.id)).repo_tags) == {BUSYBOX_REF, "localhost:5000/team/bb:latest"}
    with pytest.raises(InvalidReference, match="digest"):
        store.tag("busybox", f"x@{img.id}")
    history = store.history("busybox")
    assert history[0].id == str(img.id) and history[0].size > 1_000_000
    assert [i.id for i in store.list()] == [img.id]


def test_remove_untags_then_deletes(store) -> None:
    img = get_or_embedded(store, "busybox")
    store.tag("busybox", "other:1")
    report = store.remove("other:1")
    assert report.untagged == ["other:1"] and report.deleted == []
    report = store.remove("busybox")
    assert report.untagged == ["busybox:latest"] and report.deleted == [str(img.id)]
    assert store.list() == [] and list(store.content.walk()) == [] and store.snapshots.walk() == []


def test_remove_conflicts(store) -> None:
    img = get_or_embedded(store, "busybox")
    store.tag("busybox", "other:1")
    with pytest.raises(WrongState, match="referenced in multiple repositories"):
        store.remove(img.id.encoded[:12])
    store.prepare_container("c1", "busybox")
    store.remove("other:1")  # not the last name: allowed
    with pytest.raises(WrongState, match="must force.*c1"):
        store.remove("busybox")
    with pytest.raises(WrongState, match="being used by stopped container c1"):
        store.remove(str(img.id))
    store.snapshots.update_labels("c1", {RUNNING_LABEL: "true"})
    with pytest.raises(WrongState, match="cannot be forced.*running container c1"):
        store.remove(str(img.id), force=True)
    store.snapshots.update_labels("c1", {RUNNING_LABEL: None})
    report = store.remove("busybox", force=True)
    assert report.deleted == [] and store.get(str(img.id)).dangling  # kept for the container
    store.remove_container("c1")
    assert store.remove(str(img.id)).deleted == [str(img.id)]


def test_child_images_and_prune(store, tmp_path) -> None:
    base = get_or_embedded(store, "busybox")
    store.prepare_container("c", "busybox")
    with open(os.path.join(store.snapshots.upper_dir("c"), "added"), "w") as fh:
        fh.write("x")
    child = commit(store, "c", reference="child:1", message="add a file", author="me")
    store.remove_container("c")
    assert child.parent == str(base.id)
    with pytest.raises(WrongState, match="dependent child images"):
        store.remove(str(base.id), force=True)
    # moving a tag leaves the old image dangling; prune removes it and its garbage
    store.tag("busybox", "child:1")
    assert store.get(str(child.id)).dangling
    report = store.prune()
    assert report.images.deleted == [str(child.id)] and report.space_reclaimed > 0
    assert [i.id for i in store.list()] == [base.id]
    assert len(store.snapshots.walk()) == 1


def test_shared_base_layer_is_stored_once(store, tmp_path) -> None:
    get_or_embedded(store, "busybox")
    ids = []
    for n in range(2):
        store.prepare_container(f"c{n}", "busybox")
        with open(os.path.join(store.snapshots.upper_dir(f"c{n}"), f"file{n}"), "w") as fh:
            fh.write(str(n))
        ids.append(commit(store, f"c{n}", reference=f"app{n}").id)
        store.remove_container(f"c{n}")
    base_chain = str(store.get("busybox").chain_id)
    assert [s.key for s in store.snapshots.walk()].count(base_chain) == 1
    layers = [store.details(str(i)).config.diff_ids for i in ids]
    assert layers[0][0] == layers[1][0] and layers[0][1] != layers[1][1]
    # on disk: the busybox layer once, plus two small layers
    from dockyard.snapshot.overlay import disk_usage

    overlay = disk_usage(os.path.join(store.root, "overlay"))
    bb = store.snapshots.stat(base_chain).size
    assert bb < overlay < bb * 1.5
    blobs = [str(b.digest) for b in store.content.walk()]
    assert len(blobs) == len(set(blobs))


def test_gc_leaves_referenced_content(store) -> None:
    get_or_embedded(store, "busybox")
    before = fingerprint(store)
    orphan = store.content.put(b"orphan blob")
    report = store.gc()
    assert report.blobs == 1 and not store.content.exists(orphan.digest)
    assert fingerprint(store) == before
