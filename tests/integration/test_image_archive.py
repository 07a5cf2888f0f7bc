"""Save and load: docker-archive and OCI layouts, round trips, other tools, and bad archives."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from dockyard.errors import InvalidArgument
from dockyard.image import archive
from dockyard.image.containers import commit
from dockyard.image.embedded import get_or_embedded
from dockyard.image.store import ImageStore
from dockyard.snapshot import HostileLayer
from dockyard.types.digest import DigestMismatch
from dockyard.types.oci import UnknownMediaType
from dockyard.types.reference import InvalidReference
from hostile_tars import f, sym, tar
from image_helpers import chroot, fingerprint, image_root

pytestmark = pytest.mark.root


@pytest.fixture
def source(tmp_path) -> ImageStore:
    """A store with busybox and a two-layer child image with two names."""
    s = ImageStore(str(tmp_path / "src"))
    get_or_embedded(s, "busybox")
    s.prepare_container("c", "busybox")
    upper = s.snapshots.upper_dir("c")
    os.makedirs(os.path.join(upper, "app"))
    with open(os.path.join(upper, "app/hello"), "w") as fh:
        fh.write("hello from the child\n")
    commit(s, "c", reference="localhost:5000/child:1", changes=["CMD [\"cat\", \"/app/hello\"]"])
    s.remove_container("c")
    s.tag("localhost:5000/child:1", "child:latest")
    yield s
    s.close()


@pytest.fixture
def target(tmp_path) -> ImageStore:
    s = ImageStore(str(tmp_path / "dst"))
    yield s
    s.close()


def _saved(store: ImageStore, refs: list[str], fmt: str = archive.DOCKER_ARCHIVE) -> bytes:
    out = io.BytesIO()
    archive.save(store, refs, out, fmt)
    return out.getvalue()


def _members(data: bytes) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t.getmembers():
            fh = t.extractfile(m)
            out[m.name] = (m, fh.read() if fh else None)
    return out


def _retar(members: dict[str, tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, (info, data) in members.items():
            if data is not None:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                t.addfile(info)
    return out.getvalue()


def test_docker_archive_roundtrip(source, target, tmp_path) -> None:
    data = _saved(source, ["localhost:5000/child:1", "busybox"])
    names = _members(data)
    assert "manifest.json" in names and "repositories" in names
    manifest = json.loads(names["manifest.json"][1])
    assert sorted(t for e in manifest for t in e["RepoTags"]) == ["busybox:latest", "localhost:5000/child:1"]
    loaded = archive.load(target, io.BytesIO(data))
    assert {str(i.image.id) for i in loaded} == {str(i.id) for i in source.list()}
    child = target.get("localhost:5000/child:1")
    assert child.id == source.get("child").id
    assert target.details("localhost:5000/child:1").container_config["Cmd"] == ["cat", "/app/hello"]
    with image_root(target, "localhost:5000/child:1", str(tmp_path / "mnt")) as root:
        assert chroot(root, "cat", "/app/hello").stdout == "hello from the child\n"
    # loading again changes nothing
    before = fingerprint(target)
    archive.load(target, io.BytesIO(data))
    assert fingerprint(target) == before
    # loading an image that is already there under another name keeps the names it had
    target.tag("busybox", "kept:1")
    archive.load(target, io.BytesIO(_saved(source, ["busybox"])))
    assert "docker.io/library/kept:1" in target.get("busybox").repo_tags


def test_docker_save_by_repository_saves_all_its_tags(source) -> None:
    source.tag("busybox", "busybox:second")
    manifest = json.loads(_members(_saved(source, ["busybox"]))["manifest.json"][1])
    assert sorted(manifest[0]["RepoTags"]) == ["busybox:latest", "busybox:second"]


@pytest.mark.parametrize("fmt", [archive.OCI_ARCHIVE, archive.OCI_DIR])
def test_oci_layout_roundtrip(source, target, tmp_path, fmt) -> None:
    if fmt == archive.OCI_DIR:
        layout = str(tmp_path / "layout")
        archive.save(source, ["child:latest"], layout, fmt)
        loaded = archive.load(target, layout)
    else:
        loaded = archive.load(target, io.BytesIO(_saved(source, ["child:latest"], fmt)))
    assert [i.names for i in loaded] == [["child:latest"]]
    assert target.get("child").id == source.get("child").id


def test_oci_bare_tag_needs_a_repository(source, target, tmp_path) -> None:
    layout = str(tmp_path / "layout")
    archive.save(source, ["busybox"], layout, archive.OCI_DIR)
    index_path = os.path.join(layout, "index.json")
    with open(index_path) as fh:
        index = json.load(fh)
    for m in index["manifests"]:
        m["annotations"] = {"org.opencontainers.image.ref.name": "v1"}
    with open(index_path, "w") as fh:
        json.dump(index, fh)
    assert archive.load(target, layout)[0].image.dangling
    assert archive.load(target, layout, repository="localhost/bb")[0].names == ["localhost/bb:v1"]


def _assert_refused(store: ImageStore, data: bytes | str, error: type[Exception], match: str = "") -> None:
    before = fingerprint(store)
    with pytest.raises(error, match=match):
        archive.load(store, io.BytesIO(data) if isinstance(data, bytes) else data)
    assert fingerprint(store) == before
    assert os.listdir(store.content.ingest_dir) == []


def test_bad_archives_change_nothing(source, target, tmp_path) -> None:
    get_or_embedded(target, "busybox")
    good = _saved(source, ["localhost:5000/child:1"])
    _assert_refused(target, good[: len(good) // 2], InvalidArgument, "truncated")
    _assert_refused(target, b"\x00garbage" * 100, InvalidArgument)
    members = _members(good)
    manifest = json.loads(members["manifest.json"][1])
    top = manifest[0]["Layers"][-1]
    # a layer that is not the one the config names
    bad = dict(members)
    bad[top] = (members[top][0], tar(f("other")))
    _assert_refused(target, _retar(bad), DigestMismatch, "diff ID")
    # a bad name
    bad = dict(members)
    bad["manifest.json"] = (members["manifest.json"][0], json.dumps([{**manifest[0], "RepoTags": ["Bad Name"]}]).encode())
    _assert_refused(target, _retar(bad), InvalidReference)


def test_hostile_layer_in_an_archive_changes_nothing(source, target) -> None:
    members = _members(_saved(source, ["localhost:5000/child:1"]))
    manifest = json.loads(members["manifest.json"][1])
    top = manifest[0]["Layers"][-1]
    evil = tar(sym("evil", "/tmp"), f("evil/pwned"))
    config_name = manifest[0]["Config"]
    config = json.loads(members[config_name][1])
    config["rootfs"]["diff_ids"][-1] = "sha256:" + hashlib.sha256(evil).hexdigest()
    config_bytes = json.dumps(config).encode()
    new_config = hashlib.sha256(config_bytes).hexdigest() + ".json"
    members[top] = (members[top][0], evil)
    del members[config_name]
    members[new_config] = (tarfile.TarInfo(new_config), config_bytes)
    members["manifest.json"] = (members["manifest.json"][0], json.dumps([{**manifest[0], "Config": new_config}]).encode())
    _assert_refused(target, _retar(members), HostileLayer, "symlink")
    assert not os.path.exists("/tmp/pwned")


def test_oci_errors_change_nothing(source, target, tmp_path) -> None:
    layout = str(tmp_path / "layout")
    archive.save(source, ["busybox"], layout, archive.OCI_DIR)
    with open(os.path.join(layout, "index.json")) as fh:
        manifest_digest = json.load(fh)["manifests"][0]["digest"]
    manifest_path = os.path.join(layout, "blobs", *manifest_digest.split(":"))
    with open(manifest_path) as fh:
        manifest = json.load(fh)
    # a blob whose content does not match its name
    broken = str(tmp_path / "broken")
    shutil.copytree(layout, broken)
    layer = manifest["layers"][0]["digest"]
    layer_path = os.path.join(broken, "blobs", *layer.split(":"))
    os.chmod(layer_path, 0o644)
    with open(layer_path, "ab") as fh:
        fh.write(b"tampered")
    _assert_refused(target, broken, DigestMismatch, "digest mismatch")
    # a layer media type nobody knows
    unknown = str(tmp_path / "unknown")
    shutil.copytree(layout, unknown)
    manifest["layers"][0]["mediaType"] = "application/x-unknown-layer"
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(unknown, "blobs/sha256", digest), "wb") as fh:
        fh.write(data)
    with open(os.path.join(unknown, "index.json"), "w") as fh:
        json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                     "digest": f"sha256:{digest}", "size": len(data)}]}, fh)
    _assert_refused(target, unknown, UnknownMediaType, "application/x-unknown-layer")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def test_skopeo_reads_what_dockyard_writes_and_back(source, target, tmp_path) -> None:
    skopeo = _tool("skopeo")
    layout = str(tmp_path / "layout")
    archive.save(source, ["child:latest"], layout, archive.OCI_DIR)
    out = subprocess.run([skopeo, "inspect", f"oci:{layout}:latest"], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert len(info["Layers"]) == 2 and info["Os"] == "linux"
    # skopeo writes an OCI layout (and a docker-archive) of its own, which Dockyard loads
    copied = str(tmp_path / "by-skopeo")
    subprocess.run([skopeo, "copy", "-q", f"oci:{layout}:latest", f"oci:{copied}:v2"], check=True, capture_output=True)
    loaded = archive.load(target, copied, repository="localhost/copied")
    assert loaded[0].names == ["localhost/copied:v2"]
    assert target.details("localhost/copied:v2").config.diff_ids == source.details("child").config.diff_ids
    docker_archive = str(tmp_path / "by-skopeo.tar")
    subprocess.run([skopeo, "copy", "-q", f"oci:{layout}:latest", f"docker-archive:{docker_archive}:skopeo/img:1"],
                   check=True, capture_output=True)
    with open(docker_archive, "rb") as fh:
        assert archive.load(target, fh)[0].names == ["skopeo/img:1"]
    with image_root(target, "skopeo/img:1", str(tmp_path / "mnt")) as root:
        assert chroot(root, "cat", "/app/hello").stdout == "hello from the child\n"


def test_umoci_reads_what_dockyard_writes(source, tmp_path) -> None:
    umoci = _tool("umoci")
    layout = str(tmp_path / "layout")
    archive.save(source, ["child:latest"], layout, archive.OCI_DIR)
    stat = subprocess.run([umoci, "stat", "--image", f"{layout}:latest", "--json"], capture_output=True, text=True, check=True)
    assert len(json.loads(stat.stdout)["history"]) == 2
    bundle = str(tmp_path / "bundle")
    subprocess.run([umoci, "unpack", "--image", f"{layout}:latest", bundle], check=True, capture_output=True)
    with open(os.path.join(bundle, "rootfs/app/hello")) as fh:
        assert fh.read() == "hello from the child\n"
    assert os.path.exists(os.path.join(bundle, "rootfs/bin/busybox"))


@pytest.mark.parametrize("index_type", ["application/vnd.oci.image.index.v1+json",
                                        "application/vnd.docker.distribution.manifest.list.v2+json"])
def test_multi_platform_index_selects_the_host_platform(source, target, tmp_path, index_type) -> None:
    layout = str(tmp_path / "layout")
    archive.save(source, ["busybox"], layout, archive.OCI_DIR)
    with open(os.path.join(layout, "index.json")) as fh:
        desc = json.load(fh)["manifests"][0]
    amd64 = {"mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"],
             "platform": {"architecture": "amd64", "os": "linux"}}
    arm64 = {**amd64, "digest": "sha256:" + "e" * 64, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}
    index = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": [arm64, amd64]}).encode()
    digest = hashlib.sha256(index).hexdigest()
    with open(os.path.join(layout, "blobs/sha256", digest), "wb") as fh:
        fh.write(index)
    with open(os.path.join(layout, "index.json"), "w") as fh:
        json.dump({"schemaVersion": 2, "manifests": [{"mediaType": index_type, "digest": f"sha256:{digest}", "size": len(index),
                                                     "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"}}]}, fh)
    image = archive.load(target, layout)[0].image
    assert str(image.target.digest) == f"sha256:{digest}" and str(image.manifest_digest) == desc["digest"]
    assert image.id == source.get("busybox").id
    # saving it again writes what the store has: the amd64 manifest (the arm64 one was never there)
    again = str(tmp_path / "again")
    archive.save(target, ["multi:1"], again, archive.OCI_DIR)
    with open(os.path.join(again, "index.json")) as fh:
        assert json.load(fh)["manifests"][0]["digest"] == desc["digest"]
