"""Digests, OCI/Docker documents and platform selection."""

from __future__ import annotations

import json

import pytest

from dockyard.errors import NotImplementedFeature
from dockyard.types.digest import Digest, InvalidDigest, chain_ids, digest_bytes
from dockyard.types.oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    ImageConfig,
    InvalidDocument,
    Platform,
    UnknownMediaType,
    canonical_json,
    layer_compression,
    parse_index,
    parse_manifest,
    parse_platform,
)

H = "sha256:" + "1" * 64


def test_digest_parse() -> None:
    d = Digest.parse(H)
    assert (d.algorithm, d.short, str(d)) == ("sha256", "111111111111", H)
    assert Digest.parse("sha512:" + "a" * 128).algorithm == "sha512"
    for bad in ("sha256:" + "A" * 64, "sha256:abc", "md5:" + "a" * 32, "nocolon", "sha512:" + "a" * 64):
        with pytest.raises(InvalidDigest):
            Digest.parse(bad)


def test_chain_ids_follow_the_spec() -> None:
    a, b = digest_bytes(b"a"), digest_bytes(b"b")
    assert chain_ids([a]) == [a]
    assert chain_ids([a, b])[1] == digest_bytes(f"{a} {b}".encode())


def _manifest(media_type: str | None = OCI_MANIFEST, layers: int = 1) -> bytes:
    doc: dict = {"schemaVersion": 2}
    if media_type:
        doc["mediaType"] = media_type
    doc["config"] = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": H, "size": 10}
    doc["layers"] = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": H, "size": 5}] * layers
    return canonical_json(doc)


def test_manifest_parse_and_roundtrip() -> None:
    m = parse_manifest(_manifest())
    assert m.is_image and len(m.layers) == 1
    assert json.loads(canonical_json(m.to_dict())) == json.loads(_manifest())
    assert parse_manifest(_manifest(None)).media_type == OCI_MANIFEST
    assert parse_manifest(_manifest(DOCKER_MANIFEST)).media_type == DOCKER_MANIFEST


def test_manifest_errors_are_named() -> None:
    with pytest.raises(InvalidDocument, match="not valid JSON"):
        parse_manifest(b"{")
    with pytest.raises(UnknownMediaType, match="application/x-foo"):
        parse_manifest(_manifest("application/x-foo"))
    with pytest.raises(NotImplementedFeature, match="schema 1"):
        parse_manifest(b'{"schemaVersion": 1, "name": "x", "fsLayers": []}')
    bad = json.loads(_manifest())
    bad["layers"][0]["digest"] = "sha256:zz"
    with pytest.raises(InvalidDocument, match="manifest layer 0"):
        parse_manifest(canonical_json(bad))
    with pytest.raises(UnknownMediaType):
        layer_compression("application/x-tar")
    assert layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip") == "gzip"
    assert layer_compression("application/vnd.oci.image.layer.v1.tar+zstd") == "zstd"


def _index(entries: list[tuple[str, str, str | None]], media_type: str = OCI_INDEX) -> bytes:
    manifests = []
    for i, (os_, arch, variant) in enumerate(entries):
        p = {"os": os_, "architecture": arch}
        if variant:
            p["variant"] = variant
        manifests.append({"mediaType": OCI_MANIFEST, "digest": f"sha256:{i:064x}", "size": 1, "platform": p})
    manifests.append({"mediaType": OCI_MANIFEST, "digest": "sha256:" + "f" * 64, "size": 1,
                      "platform": {"os": "unknown", "architecture": "unknown"}})
    return canonical_json({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests})


def test_platform_selection() -> None:
    idx = parse_index(_index([("linux", "arm64", "v8"), ("linux", "amd64", None), ("windows", "amd64", None)]))
    assert idx.select(Platform("linux", "amd64")).digest == Digest.parse(f"sha256:{1:064x}")
    assert idx.select(Platform("linux", "arm64", "v8")).digest == Digest.parse(f"sha256:{0:064x}")
    idx2 = parse_index(_index([("linux", "arm", "v6"), ("linux", "arm", "v7")], DOCKER_MANIFEST_LIST))
    assert idx2.select(Platform("linux", "arm", "v7")).digest == Digest.parse(f"sha256:{1:064x}")
    with pytest.raises(Exception, match="no matching manifest for linux/s390x"):
        idx.select(Platform("linux", "s390x"))


def test_parse_platform() -> None:
    assert parse_platform("linux/amd64") == Platform("linux", "amd64")
    assert parse_platform("linux/arm64/v8") == Platform("linux", "arm64", "v8")
    with pytest.raises(Exception):
        parse_platform("linux//x")


def test_config_validation() -> None:
    good = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [H]}, "config": {"Cmd": ["sh"]}}
    cfg = ImageConfig(good)
    assert cfg.diff_ids == [Digest.parse(H)] and cfg.container_config["Cmd"] == ["sh"]
    with pytest.raises(InvalidDocument, match="rootfs"):
        ImageConfig({"architecture": "amd64", "os": "linux"})
    with pytest.raises(InvalidDocument, match="architecture"):
        ImageConfig({"os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
