"""Fixtures for the acceptance tests: a private real Docker engine and the runtime under test.

The runtime is chosen with DOCKYARD_TEST_RUNTIME: "dockyard" (the default: dockyard-runtime,
registered with the engine as `dockyard`), "runc" (Docker's own, to validate the tests) or
"crun" (through bench/crun-hybrid.sh). The engine is started once per session, because the
leak check around each test (tests/conftest.py) would count its mounts, cgroups and processes
against the first test; it is stopped, and everything it left removed, at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from docker_engine import (  # noqa: E402
    DockerCli,
    DockerEngine,
    EngineError,
    import_busybox,
    remove_engine_dir,
    start_engine,
    stop_engine,
)

REPO = Path(__file__).resolve().parents[2]
RUNTIME_ENV = "DOCKYARD_TEST_RUNTIME"


def runtime_name() -> str:
    return os.environ.get(RUNTIME_ENV, "dockyard")


def _dockyard_runtime() -> str | None:
    """dockyard-runtime beside the interpreter running the tests (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "dockyard-runtime"
    if os.access(beside, os.X_OK):
        return str(beside.absolute())
    found = shutil.which("dockyard-runtime")
    return os.path.abspath(found) if found else None


def _extra_runtimes() -> dict[str, str]:
    """Runtimes to register besides Docker's built-in runc: name -> absolute executable."""
    runtimes = {}
    dockyard = _dockyard_runtime()
    if dockyard:
        runtimes["dockyard"] = dockyard
    if shutil.which("crun") and shutil.which("unshare"):
        runtimes["crun"] = str(REPO / "bench" / "crun-hybrid.sh")
    return runtimes


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    if os.geteuid() != 0:
        pytest.skip("the Docker engine needs root")
    for tool in ("dockerd", "docker", "containerd", "tar"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")
    try:
        engine = start_engine(tmp_path_factory.mktemp("docker"), runtimes=_extra_runtimes())
    except EngineError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        import_busybox(engine)
        _warm_up(engine)
    except BaseException:
        stop_engine(engine)
        raise
    yield engine
    problems = stop_engine(engine)
    remove_engine_dir(engine)
    if problems:
        pytest.fail("the Docker engine left things behind:\n" + "\n".join(problems), pytrace=False)


def _warm_up(engine: DockerEngine) -> None:
    """Run one container per runtime, so that the engine's one-time set-up (the parent cgroup
    in every hierarchy) happens here and not inside the first test's leak check."""
    engine.docker("run", "--rm", "--runtime", "runc", "busybox", "true").check()
    name = runtime_name()
    if name != "runc" and name in engine.runtimes:
        result = engine.docker("run", "--rm", "--runtime", name, "busybox", "true")
        if not result.ok:
            print(f"warm-up with runtime {name} failed (the tests will show why):\n{result}")
    leftovers = engine.docker("ps", "--all", "--quiet").stdout.split()
    if leftovers:
        engine.docker("rm", "--force", *leftovers)


@pytest.fixture(scope="session")
def runtime(docker_engine: DockerEngine) -> str:
    """The name of the runtime under test, as `docker run --runtime` takes it."""
    name = runtime_name()
    if name != "runc" and name not in docker_engine.runtimes:
        where = {"dockyard": "run scripts/setup.sh to install dockyard-runtime",
                 "crun": "install crun"}.get(name, f"known: runc, {', '.join(docker_engine.runtimes)}")
        pytest.fail(f"{RUNTIME_ENV}={name}: the engine has no such runtime ({where})", pytrace=False)
    return name


@pytest.fixture
def docker(docker_engine: DockerEngine, runtime: str) -> Iterator[DockerCli]:
    """The docker CLI on the test engine; containers it names are force-removed afterwards."""
    cli = DockerCli(docker_engine, runtime)
    yield cli
    cli.cleanup()


@pytest.fixture
def docker_client(docker_engine: DockerEngine) -> Iterator[Any]:
    """A docker-py client on the test engine."""
    client = docker_engine.client()
    yield client
    client.close()
