"""The registry server over real HTTP on loopback: the distribution API by hand, and skopeo."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    def __init__(self, root: Path, extra: list[str] | None = None, port: int | None = None,
                 context: Any = None) -> None:
        self.port = port or _free_port()
        self.root = root
        self.context = context
        self.log = open(root.parent / "registry.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, "-m", "dockyard.registry", "serve", "--addr",
                                         f"127.0.0.1:{self.port}", "--root", str(root), *(extra or [])],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.request("GET", "/v2/")[0] in (200, 401):
                    break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("the registry did not start: " + (root.parent / "registry.log").read_text())
            time.sleep(0.05)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = (http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=self.context)
                if self.context is not None else http.client.HTTPConnection("127.0.0.1", self.port, timeout=30))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry")
    yield reg
    reg.stop()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_blob(reg: Registry, name: str, data: bytes) -> str:
    digest = _digest(data)
    status, headers, _ = reg.request("POST", f"/v2/{name}/blobs/uploads/?digest={digest}", data)
    assert status == 201 and headers["docker-content-digest"] == digest
    return digest


def _manifest(config: str, config_size: int, layers: list[tuple[str, int]]) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s} for d, s in layers],
    }).encode()


def _errors(body: bytes) -> list[str]:
    return [e["code"] for e in json.loads(body)["errors"]]


def test_base_and_unknown(registry: Registry) -> None:
    status, headers, body = registry.request("GET", "/v2/")
    assert status == 200 and headers["docker-distribution-api-version"] == "registry/2.0"
    status, _, body = registry.request("GET", "/v2/nothing/manifests/latest")
    assert status == 404 and _errors(body) == ["MANIFEST_UNKNOWN"]
    status, _, body = registry.request("GET", f"/v2/nothing/blobs/{_digest(b'x')}")
    assert status == 404 and _errors(body) == ["BLOB_UNKNOWN"]
    status, _, body = registry.request("POST", "/v2/Bad..Name/blobs/uploads/")
    assert status == 400 and _errors(body) == ["NAME_INVALID"]


def test_chunked_upload_manifest_tags_and_ranges(registry: Registry) -> None:
    layer = os.urandom(300_000)
    status, headers, _ = registry.request("POST", "/v2/team/app/blobs/uploads/")
    assert status == 202
    location = headers["location"]
    status, headers, _ = registry.request("PATCH", location, layer[:100_000],
                                          {"Content-Range": "0-99999", "Content-Type": "application/octet-stream"})
    assert status == 202 and headers["range"] == "0-99999"
    status, headers, _ = registry.request("PATCH", location, layer[50:60], {"Content-Range": "50-59"})
    assert status == 416  # out of order
    status, headers, _ = registry.request("GET", location)
    assert status == 204 and headers["range"] == "0-99999"
    status, headers, _ = registry.request("PUT", f"{location}?digest={_digest(layer)}", layer[100_000:])
    assert status == 201 and headers["docker-content-digest"] == _digest(layer)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [
        _digest(layer)]}}).encode()
    config_digest = _push_blob(registry, "team/app", config)
    manifest = _manifest(config_digest, len(config), [(_digest(layer), len(layer))])
    status, headers, _ = registry.request("PUT", "/v2/team/app/manifests/v1", manifest,
                                          {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 201 and headers["docker-content-digest"] == _digest(manifest)
    for ref in ("v1", _digest(manifest)):
        status, headers, body = registry.request("GET", f"/v2/team/app/manifests/{ref}")
        assert status == 200 and body == manifest
        assert headers["content-type"] == "application/vnd.oci.image.manifest.v1+json"
    status, headers, body = registry.request("GET", f"/v2/team/app/blobs/{_digest(layer)}", headers={"Range": "bytes=10-19"})
    assert status == 206 and body == layer[10:20] and headers["content-range"] == f"bytes 10-19/{len(layer)}"
    status, headers, _ = registry.request("HEAD", f"/v2/team/app/blobs/{_digest(layer)}")
    assert status == 200 and headers["content-length"] == str(len(layer))
    for tag in ("v2", "a", "z"):
        assert registry.request("PUT", f"/v2/team/app/manifests/{tag}", manifest,
                                {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})[0] == 201
    status, headers, body = registry.request("GET", "/v2/team/app/tags/list?n=2")
    assert json.loads(body)["tags"] == ["a", "v1"] and 'rel="next"' in headers["link"]
    status, _, body = registry.request("GET", "/v2/team/app/tags/list?n=2&last=v1")
    assert json.loads(body)["tags"] == ["v2", "z"]
    assert json.loads(registry.request("GET", "/v2/_catalog")[2])["repositories"] == ["team/app"]
    # blobs are per repository: another repository must mount them first
    assert registry.request("HEAD", f"/v2/other/blobs/{_digest(layer)}")[0] == 404
    status, _, _ = registry.request("POST", f"/v2/other/blobs/uploads/?mount={_digest(layer)}&from=team/app")
    assert status == 201 and registry.request("HEAD", f"/v2/other/blobs/{_digest(layer)}")[0] == 200
    # delete by digest removes the tags pointing at it
    assert registry.request("DELETE", f"/v2/team/app/manifests/{_digest(manifest)}")[0] == 202
    assert json.loads(registry.request("GET", "/v2/team/app/tags/list")[2])["tags"] == []


def test_bad_uploads_and_manifests_lose_nothing(registry: Registry) -> None:
    good = _push_blob(registry, "r", b"good")
    status, _, body = registry.request("POST", f"/v2/r/blobs/uploads/?digest={_digest(b'other')}", b"tampered")
    assert status == 400 and _errors(body) == ["DIGEST_INVALID"]
    assert registry.request("HEAD", f"/v2/r/blobs/{_digest(b'tampered')}")[0] == 404
    status, _, body = registry.request("PUT", "/v2/r/manifests/t", b"{not json",
                                       {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 400 and _errors(body) == ["MANIFEST_INVALID"]
    missing = _manifest(good, 4, [(_digest(b"never pushed"), 12)])
    status, _, body = registry.request("PUT", "/v2/r/manifests/t", missing,
                                       {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 400 and _errors(body) == ["MANIFEST_BLOB_UNKNOWN"]
    assert registry.request("GET", "/v2/r/manifests/t")[0] == 404
    status, _, body = registry.request("PUT", "/v2/r/blobs/uploads/nosuchsession?digest=" + good, b"")
    assert status == 404 and _errors(body) == ["BLOB_UPLOAD_UNKNOWN"]
    status, _, body = registry.request("GET", "/v2/r/blobs/sha256:xyz")
    assert status == 400 and _errors(body) == ["DIGEST_INVALID"]


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is installed by scripts/setup.sh")
def test_skopeo_round_trip(registry: Registry, tmp_path: Path) -> None:
    from image_helpers import synthetic_docker_archive

    archive = tmp_path / "image.tar"
    synthetic_docker_archive(str(archive), layers=2, files_per_layer=20)
    dest = f"docker://{registry.host}/library/busybox:1"
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{archive}", dest], check=True,
                   capture_output=True, timeout=120)
    info: dict[str, Any] = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", dest], check=True,
                                                      capture_output=True, timeout=60).stdout)
    assert info["RepoTags"] == ["1"] and info["Os"] == "linux"
    out = tmp_path / "oci"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", dest, f"oci:{out}:bb"], check=True,
                   capture_output=True, timeout=120)
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "bb"


def test_upload_survives_restart_read_only_and_gc(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    reg = Registry(root)
    data = os.urandom(200_000)
    try:
        status, headers, _ = reg.request("POST", "/v2/keep/blobs/uploads/")
        location = headers["location"]
        assert reg.request("PATCH", location, data[:120_000])[0] == 202
    finally:
        reg.stop()
    reg = Registry(root, port=reg.port)
    try:
        status, headers, _ = reg.request("GET", location)
        assert status == 204 and headers["range"] == "0-119999"
        assert reg.request("PATCH", location, data[120_000:], {"Content-Range": "120000-199999"})[0] == 202
        status, headers, _ = reg.request("PUT", f"{location}?digest={_digest(data)}")
        assert status == 201
        orphan = _push_blob(reg, "gone", b"orphan")
        assert reg.request("DELETE", f"/v2/gone/blobs/{orphan}")[0] == 202
    finally:
        reg.stop()
    out = subprocess.run([sys.executable, "-m", "dockyard.registry", "garbage-collect", "--root", str(root)],
                         capture_output=True, text=True, check=True).stdout
    assert f"removed {orphan}" in out and _digest(data) not in out
    reg = Registry(root, ["--read-only"], port=reg.port)
    try:
        status, _, body = reg.request("GET", f"/v2/keep/blobs/{_digest(data)}")
        assert status == 200 and body == data
        status, _, body = reg.request("POST", "/v2/keep/blobs/uploads/")
        assert status == 405 and _errors(body) == ["UNSUPPORTED"]
    finally:
        reg.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
def test_tls(tmp_path: Path) -> None:
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    context = ssl.create_default_context(cafile=str(cert))
    reg = Registry(tmp_path / "registry", ["--tls-cert", str(cert), "--tls-key", str(key)], context=context)
    try:
        status, headers, _ = reg.request("GET", "/v2/")
        assert status == 200 and headers["docker-distribution-api-version"] == "registry/2.0"
        with pytest.raises(ssl.SSLError):  # a client that does not trust the certificate is refused
            untrusting = http.client.HTTPSConnection("127.0.0.1", reg.port, timeout=10,
                                                     context=ssl.create_default_context())
            untrusting.request("GET", "/v2/")
    finally:
        reg.stop()


def test_referrers(registry: Registry) -> None:
    empty = _push_blob(registry, "app", b"{}")
    subject = _manifest(empty, 2, [])
    assert registry.request("PUT", "/v2/app/manifests/v1", subject,
                            {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})[0] == 201
    sig_blob = _push_blob(registry, "app", b"signature bytes")
    signature = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.signature", "digest": sig_blob, "size": 15}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _digest(subject),
                    "size": len(subject)},
        "annotations": {"signed-by": "test"},
    }).encode()
    status, headers, _ = registry.request("PUT", f"/v2/app/manifests/{_digest(signature)}", signature,
                                          {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 201 and headers["oci-subject"] == _digest(subject)
    status, headers, body = registry.request("GET", f"/v2/app/referrers/{_digest(subject)}")
    index = json.loads(body)
    assert status == 200 and headers["content-type"].startswith("application/vnd.oci.image.index.v1+json")
    assert [m["digest"] for m in index["manifests"]] == [_digest(signature)]
    assert index["manifests"][0]["artifactType"] == "application/vnd.example.signature"
    assert index["manifests"][0]["annotations"] == {"signed-by": "test"}
    status, headers, body = registry.request("GET", f"/v2/app/referrers/{_digest(subject)}?artifactType=other/type")
    assert json.loads(body)["manifests"] == [] and headers["oci-filters-applied"] == "artifactType"
    assert json.loads(registry.request("GET", f"/v2/app/referrers/{_digest(b'none')}")[2])["manifests"] == []


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is installed by scripts/setup.sh")
def test_pull_through_cache(registry: Registry, tmp_path: Path) -> None:
    from image_helpers import synthetic_docker_archive

    archive = tmp_path / "image.tar"
    synthetic_docker_archive(str(archive), layers=2, files_per_layer=10)
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{archive}",
                    f"docker://{registry.host}/lib/app:1"], check=True, capture_output=True, timeout=120)
    cache = Registry(tmp_path / "cache", ["--proxy-remote", f"http://{registry.host}"])
    try:
        out = tmp_path / "first"
        subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{cache.host}/lib/app:1", f"dir:{out}"],
                       check=True, capture_output=True, timeout=120)
        registry.stop()  # the upstream goes away: the cache still serves what it fetched
        again = tmp_path / "second"
        subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{cache.host}/lib/app:1", f"dir:{again}"],
                       check=True, capture_output=True, timeout=120)
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in again.iterdir())
        for p in out.iterdir():
            assert p.read_bytes() == (again / p.name).read_bytes()
        status, _, _ = cache.request("GET", "/v2/lib/app/manifests/2")
        assert status == 404
    finally:
        cache.stop()
