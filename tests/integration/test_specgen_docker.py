"""services.specgen field by field against the spec a private Docker engine gives runc."""
from __future__ import annotations

import glob
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from dockyard.services import specgen
from runtime_helpers import busybox_rootfs

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "acceptance"))
docker_engine = pytest.importorskip("docker_engine")

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("dockerd"), reason="needs root and dockerd")

FLAGS = ["--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN", "-m", "64m", "--cpus", "1.5", "--pids-limit", "50",
         "-e", "A=1", "-w", "/tmp", "--tmpfs", "/run:size=1m"]
HOST = {"CapAdd": ["NET_ADMIN"], "CapDrop": ["CHOWN"], "Memory": 64 << 20, "NanoCpus": 1_500_000_000,
        "PidsLimit": 50, "Tmpfs": {"/run": "size=1m"}}


@pytest.fixture(scope="module")
def docker_spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    base = tmp_path_factory.mktemp("docker")
    engine = docker_engine.start_engine(base)
    try:
        docker_engine.import_busybox(engine)
        cid = engine.docker("run", "-d", *FLAGS, "busybox:latest", "sleep", "30").check().stdout.strip()
        path = glob.glob(f"{base}/exec/**/{cid}/config.json", recursive=True)[0]
        with open(path) as handle:
            spec = json.load(handle)
        inspect = engine.inspect(cid)
        engine.docker("rm", "-f", cid)
        yield spec, inspect
    finally:
        docker_engine.stop_engine(engine)


def test_matches_docker(docker_spec: tuple[dict[str, Any], dict[str, Any]], tmp_path: Path) -> None:
    theirs, inspect = docker_spec
    busybox_rootfs(str(tmp_path / "rootfs"))
    config = {"Env": ["A=1"], "WorkingDir": "/tmp", "Cmd": ["sleep", "30"], "Hostname": inspect["Config"]["Hostname"]}
    ours = specgen.build_spec(inspect["Id"], config, HOST, {}, str(tmp_path / "rootfs"), {})
    for key in ("args", "env", "cwd", "oomScoreAdj"):
        assert ours["process"][key] == theirs["process"][key], key
    assert sorted(ours["process"]["capabilities"]["bounding"]) == sorted(theirs["process"]["capabilities"]["bounding"])
    assert ours["hostname"] == theirs["hostname"]
    assert ours["linux"]["readonlyPaths"] == theirs["linux"]["readonlyPaths"]
    assert set(theirs["linux"]["maskedPaths"]) <= set(ours["linux"]["maskedPaths"])  # newer moby masks more
    assert ours["linux"]["sysctl"] == theirs["linux"]["sysctl"]
    ours_res, theirs_res = ours["linux"]["resources"], theirs["linux"]["resources"]
    assert ours_res["memory"]["limit"] == theirs_res["memory"]["limit"]
    assert ours_res["memory"]["swap"] == theirs_res["memory"]["swap"]
    assert (ours_res["cpu"]["quota"], ours_res["cpu"]["period"]) == (theirs_res["cpu"]["quota"],
                                                                     theirs_res["cpu"]["period"])
    assert ours_res["pids"] == theirs_res["pids"]
    mine = {m["destination"]: (m["type"], sorted(m["options"])) for m in ours["mounts"]}
    for m in theirs["mounts"]:
        if m["destination"].startswith("/etc/"):
            continue  # the per-container files: not passed in this comparison
        options = sorted(o for o in m["options"] if o not in ("rprivate", "relatime"))
        assert (mine[m["destination"]][0], sorted(o for o in mine[m["destination"]][1] if o != "relatime")) \
            == (m["type"], options), m["destination"]
    sc_ours, sc_theirs = ours["linux"]["seccomp"], theirs["linux"]["seccomp"]
    assert sc_ours["architectures"] == sc_theirs["architectures"]
    assert sc_ours["defaultAction"] == sc_theirs["defaultAction"]

    def allowed(profile: dict[str, Any]) -> set[str]:
        return {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
                for n in r["names"]}
    # profile revisions add and drop a few syscalls (io_uring, futex_waitv...); the bulk must agree
    assert len(allowed(sc_ours) ^ allowed(sc_theirs)) < 30
    assert not {"mount", "unshare", "setns", "reboot", "init_module", "bpf"} & (allowed(sc_ours) | allowed(sc_theirs))
