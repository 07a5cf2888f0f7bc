"""docker-compose 1.29 (a real client of the API) against dockyardd in a test network namespace:
a two-service project with its own network and a named volume survives `down` and `up`."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_dockyardd_api import needs_containers
from docker_engine import EngineError
from dockyardd import Dockyardd, start_dockyardd, stop_dockyardd

pytestmark = [pytest.mark.root, needs_containers, pytest.mark.slow]

COMPOSE = """\
version: "3.8"
services:
  web:
    image: busybox
    command:
      - sh
      - -c
      - >-
        mkdir -p /data/www && n=$$(cat /data/www/index.html 2>/dev/null || echo 0) &&
        echo $$((n+1)) > /data/www/index.html && exec httpd -f -p 80 -h /data/www
    volumes: [data:/data]
    networks: [backend]
  client:
    image: busybox
    command: sleep 300
    networks: [backend]
networks:
  backend: {}
volumes:
  data: {}
"""


@pytest.fixture
def netd(tmp_path: Path) -> Iterator[Dockyardd]:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (scripts/setup.sh installs it)")
    ns = f"dyt-cmp-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    d = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        try:
            d = start_dockyardd(tmp_path / "d", netns=ns)
        except EngineError as e:
            pytest.fail(str(e), pytrace=False)
        d.docker("pull", "busybox").check()
        yield d
    finally:
        if d is not None:
            problems = stop_dockyardd(d)
            assert not problems, problems
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def compose(d: Dockyardd, project: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": f"unix://{d.socket}", "COMPOSE_INTERACTIVE_NO_CLI": "1"}
    return subprocess.run(["docker-compose", "-p", "dyc", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _fetch(d: Dockyardd) -> str:
    deadline = time.monotonic() + 15
    out = ""
    while time.monotonic() < deadline:
        r = d.docker("exec", "dyc_client_1", "wget", "-qO-", "http://web/index.html")
        out = r.stdout.strip()
        if r.ok and out:
            return out
        time.sleep(0.3)
    return out


def test_two_services_network_and_volume_survive_down_up(netd: Dockyardd, tmp_path: Path) -> None:
    d = netd
    project = tmp_path / "project"
    project.mkdir()
    (project / "docker-compose.yml").write_text(COMPOSE)
    try:
        r = compose(d, project, "up", "-d")
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{d.log_tail(40)}"
        assert _fetch(d) == "1"  # the client reaches web by its service name
        r = compose(d, project, "down")
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
        assert "dyc_backend" not in d.docker("network", "ls").stdout
        assert "dyc_data" in d.docker("volume", "ls", "-q").stdout.split()
        r = compose(d, project, "up", "-d")
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{d.log_tail(40)}"
        assert _fetch(d) == "2"  # the volume kept the count
    finally:
        compose(d, project, "down", "-v")
