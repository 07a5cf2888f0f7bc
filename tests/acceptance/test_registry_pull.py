"""dockyardd pulls from Dockyard's own registry (loopback, plain HTTP), driven by the docker CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from dockyardd import Dockyardd, start_dockyardd, stop_dockyardd  # noqa: E402
from test_registry import Registry  # noqa: E402

pytestmark = [pytest.mark.root]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Registry, Dockyardd]]:
    if shutil.which("docker") is None or shutil.which("skopeo") is None:
        pytest.skip("the docker CLI and skopeo are installed by scripts/setup.sh")
    reg = Registry(tmp_path / "registry")
    try:
        d = start_dockyardd(tmp_path / "dockyardd")
    except BaseException:
        reg.stop()
        raise
    yield reg, d
    problems = stop_dockyardd(d)
    reg.stop()
    assert not problems, problems


def test_pull_run_and_refuse_tampering(env: tuple[Registry, Dockyardd], tmp_path: Path) -> None:
    reg, d = env
    d.docker("pull", "busybox").check()
    archive = tmp_path / "busybox.tar"
    d.docker("save", "-o", str(archive), "busybox").check()
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{archive}",
                    f"docker://{reg.host}/team/busybox:v1"], check=True, capture_output=True, timeout=120)
    d.docker("rmi", "busybox").check()
    name = f"{reg.host}/team/busybox:v1"
    r = d.docker("pull", name)
    assert r.ok and f"Status: Downloaded newer image for {name}" in r.stdout, r
    r = d.docker("run", "--rm", name, "echo", "pulled")
    assert r.ok and r.stdout == "pulled\n", r
    info = d.inspect(name)
    assert any(x.startswith(f"{reg.host}/team/busybox@sha256:") for x in info["RepoDigests"])
    client = d.client()
    try:
        info = client.api.inspect_distribution(name)
    finally:
        client.close()
    assert info["Descriptor"]["digest"].startswith("sha256:") and info["Platforms"][0]["os"] == "linux"
    r = d.docker("pull", f"{reg.host}/team/busybox:missing")
    assert not r.ok and "not found" in r.stderr
    # a registry that serves a layer whose bytes do not match its digest: refused, no image left
    manifest = json.loads(reg.request("GET", "/v2/team/busybox/manifests/v1",
                                      headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})[2])
    layer = manifest["layers"][0]["digest"]
    blob = reg.root / "content" / "blobs" / "sha256" / layer.split(":")[1]
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    d.docker("rmi", name).check()
    before = d.docker("images", "-q", "--no-trunc").stdout.split()
    r = d.docker("pull", name)
    assert not r.ok and "digest" in (r.stdout + r.stderr).lower(), r
    assert d.docker("images", "-q", "--no-trunc").stdout.split() == before


def test_push_then_pull_elsewhere(env: tuple[Registry, Dockyardd], tmp_path: Path) -> None:
    reg, d = env
    d.docker("pull", "busybox").check()
    d.docker("run", "--name", "maker", "busybox", "sh", "-c", "echo made > /made.txt").check()
    name = f"{reg.host}/me/made:1"
    d.docker("commit", "maker", name).check()
    d.docker("rm", "maker").check()
    r = d.docker("push", name)
    assert r.ok and "digest: sha256:" in r.stdout, r
    tags = json.loads(reg.request("GET", "/v2/me/made/tags/list")[2])["tags"]
    assert tags == ["1"]
    again = d.docker("push", name)
    assert again.ok and "Layer already exists" in again.stdout, again
    other = f"{reg.host}/you/made:2"
    d.docker("tag", name, other).check()
    mounted = d.docker("push", other)  # same registry, another repository: mounted, not uploaded
    assert mounted.ok and "Mounted from me/made" in mounted.stdout, mounted
    d.docker("rmi", other).check()
    d.docker("rmi", name).check()
    d.docker("rmi", "busybox").check()
    r = d.docker("run", "--rm", name, "cat", "/made.txt")  # pulled on demand? docker run pulls when missing
    if not r.ok:
        d.docker("pull", name).check()
        r = d.docker("run", "--rm", name, "cat", "/made.txt")
    assert r.ok and r.stdout == "made\n", r
    r = d.docker("push", f"{reg.host}/me/absent:1")
    assert not r.ok and "No such image" in r.stderr, r


def test_registry_mirror_serves_docker_hub_names(env: tuple[Registry, Dockyardd], tmp_path: Path) -> None:
    reg, d = env
    from dockyardd import launch

    d.docker("pull", "busybox").check()
    archive = tmp_path / "busybox.tar"
    d.docker("save", "-o", str(archive), "busybox").check()
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"docker-archive:{archive}",
                    f"docker://{reg.host}/library/mirrored:2"], check=True, capture_output=True, timeout=120)
    r = d.docker("pull", "mirrored:2")  # no mirror configured: refused, nothing sent anywhere
    assert not r.ok and "Docker Hub is not enabled" in r.stderr
    m = launch(tmp_path / "with-mirror", ["--registry-mirror", f"http://{reg.host}"])
    try:
        r = m.docker("pull", "mirrored:2")
        assert r.ok, r
        r = m.docker("run", "--rm", "mirrored:2", "echo", "from the mirror")
        assert r.ok and r.stdout == "from the mirror\n", r
        assert "docker.io/library/mirrored:2" not in m.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        assert "mirrored:2" in m.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    finally:
        problems = stop_dockyardd(m)
    assert not problems, problems


@pytest.mark.parametrize("mode", ["htpasswd", "token"])
def test_login_push_pull_with_auth(mode: str, tmp_path: Path) -> None:
    import bcrypt

    if shutil.which("docker") is None or shutil.which("skopeo") is None:
        pytest.skip("the docker CLI and skopeo are installed by scripts/setup.sh")
    users = tmp_path / "htpasswd"
    users.write_bytes(b"alice:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)) + b"\n")
    reg = Registry(tmp_path / "registry", ["--auth", mode, "--htpasswd", str(users)])
    try:
        d = start_dockyardd(tmp_path / "dockyardd")
    except BaseException:
        reg.stop()
        raise
    try:
        d.docker("pull", "busybox").check()
        name = f"{reg.host}/alice/bb:1"
        d.docker("tag", "busybox", name).check()
        r = d.docker("push", name)
        assert not r.ok and "docker login" in (r.stdout + r.stderr), r
        r = d.docker("login", "-u", "alice", "--password-stdin", reg.host, input="wrong\n")
        assert not r.ok and "401" in r.stderr, r
        r = d.docker("login", "-u", "alice", "--password-stdin", reg.host, input="s3cret\n")
        assert r.ok and "Login Succeeded" in r.stdout, r
        r = d.docker("push", name)
        assert r.ok and "digest: sha256:" in r.stdout, r
        d.docker("rmi", name).check()
        r = d.docker("pull", name)
        assert r.ok, r
        d.docker("logout", reg.host).check()
        d.docker("rmi", name).check()
        r = d.docker("pull", name)
        assert not r.ok, r
        status, headers, _ = reg.request("GET", "/v2/alice/bb/tags/list")
        assert status == 401 and headers["www-authenticate"].startswith("Basic" if mode == "htpasswd" else "Bearer")
    finally:
        problems = stop_dockyardd(d)
        reg.stop()
    assert not problems, problems


class DistributionRegistry:
    """Debian's docker-registry (the distribution project's registry) on a loopback port."""

    def __init__(self, directory: Path) -> None:
        import time

        from test_registry import _free_port

        self.port = _free_port()
        directory.mkdir(parents=True)
        config = directory / "config.yml"
        config.write_text(f"version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {directory}/data}}\n"
                          f"  delete: {{enabled: true}}\nhttp: {{addr: 127.0.0.1:{self.port}}}\n")
        self.log = open(directory / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        import http.client

        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v2/")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("docker-registry did not start: " + (directory / "registry.log").read_text())
            time.sleep(0.05)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.mark.skipif(shutil.which("docker-registry") is None, reason="docker-registry is installed by scripts/setup.sh")
def test_push_pull_with_the_distribution_registry(tmp_path: Path) -> None:
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is installed by scripts/setup.sh")
    reg = DistributionRegistry(tmp_path / "distribution")
    try:
        d = start_dockyardd(tmp_path / "dockyardd")
    except BaseException:
        reg.stop()
        raise
    try:
        d.docker("pull", "busybox").check()
        d.docker("run", "--name", "src", "busybox", "sh", "-c", "echo layered > /layer.txt").check()
        name = f"{reg.host}/dist/test:1"
        d.docker("commit", "src", name).check()
        d.docker("rm", "src").check()
        r = d.docker("push", name)
        assert r.ok and "digest: sha256:" in r.stdout, r
        d.docker("rmi", name).check()
        r = d.docker("pull", name)
        assert r.ok and "Downloaded newer image" in r.stdout, r
        r = d.docker("run", "--rm", name, "cat", "/layer.txt")
        assert r.ok and r.stdout == "layered\n", r
    finally:
        problems = stop_dockyardd(d)
        reg.stop()
    assert not problems, problems


def test_docker_engine_pushes_to_and_pulls_from_dockyard_registry(docker_engine: Any, tmp_path: Path) -> None:
    """The real Docker engine (dockerd 20.10) against `dockyard registry serve` on loopback."""
    import re

    reg = Registry(tmp_path / "registry")
    name = f"{reg.host}/engine/busybox:1"
    made = [name]
    try:
        docker_engine.docker("tag", "busybox:latest", name).check()
        pushed = docker_engine.docker("push", name, timeout=120)
        assert pushed.ok, pushed
        digest = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed.stdout)
        assert digest, pushed.stdout
        status, headers, _ = reg.request(
            "HEAD", "/v2/engine/busybox/manifests/1",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert status == 200 and headers["docker-content-digest"] == digest.group(1)
        again = docker_engine.docker("push", name, timeout=120)
        assert again.ok and "Layer already exists" in again.stdout, again
        docker_engine.docker("rmi", name).check()
        pulled = docker_engine.docker("pull", name, timeout=120)
        assert pulled.ok and f"Digest: {digest.group(1)}" in pulled.stdout, pulled
        ran = docker_engine.docker("run", "--rm", "--network", "none", name, "echo", "from the dockyard registry")
        assert ran.ok and ran.stdout.strip() == "from the dockyard registry", ran
        made.append(f"{reg.host}/engine/busybox@{digest.group(1)}")
        by_digest = docker_engine.docker("pull", made[-1], timeout=120)
        assert by_digest.ok, by_digest
    finally:
        for ref in made:
            docker_engine.docker("rmi", ref)
        reg.stop()
