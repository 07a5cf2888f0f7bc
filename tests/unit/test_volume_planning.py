"""Volume planning without root: a create request's mount points, the spec generator's volume
mounts, the Docker MountPoint shape, and DriverOpts validation."""

from __future__ import annotations

import pytest

from dockyard.daemon.api.docker.containers import mounts_json
from dockyard.errors import InvalidArgument, NotImplementedFeature
from dockyard.services import specgen
from dockyard.services.containers import Container
from dockyard.services.volumes import parse_driver_opts, plan_mounts


def test_plan_mounts() -> None:
    plan = plan_mounts({"Volumes": {"/cache": {}, "/data": {}, "/run/x": {}}},
                       {"Binds": ["/srv:/srv:ro", "named:/data:ro,nocopy"],
                        "Mounts": [{"Type": "volume", "Target": "/anon", "VolumeOptions": {
                            "NoCopy": True, "Labels": {"l": "1"},
                            "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}},
                                   {"Type": "tmpfs", "Target": "/t"}],
                        "Tmpfs": {"/run/x": ""}})
    by_dest = {m["destination"]: m for m in plan}
    assert by_dest["/srv"] == {"type": "bind", "name": "", "source": "/srv", "destination": "/srv", "driver": "",
                               "mode": "ro", "rw": False, "propagation": "rprivate", "nocopy": False}
    assert by_dest["/data"]["name"] == "named" and by_dest["/data"]["nocopy"] and not by_dest["/data"]["rw"]
    assert by_dest["/anon"]["name"] == "" and by_dest["/anon"]["driver_opts"] == {"type": "tmpfs", "device": "tmpfs"}
    assert by_dest["/anon"]["labels"] == {"l": "1"} and by_dest["/anon"]["nocopy"]
    assert by_dest["/t"]["type"] == "tmpfs"
    assert by_dest["/cache"]["name"] == "" and by_dest["/cache"]["mode"] == ""
    assert "/run/x" not in by_dest  # covered by a --tmpfs
    assert len(plan) == 5


def test_plan_volumes_from_and_errors() -> None:
    inherited = [{"type": "volume", "name": "v", "source": "/vols/v/_data", "destination": "/data", "driver": "local",
                  "mode": "", "rw": False, "propagation": "", "nocopy": False, "inherited": True}]
    plan = plan_mounts({"Volumes": {"/data": {}}}, {}, inherited)
    assert plan == inherited  # the image's VOLUME is covered by --volumes-from
    plan = plan_mounts({}, {"Binds": ["other:/data"]}, inherited)
    assert [m["name"] for m in plan] == ["other"]  # the request's own mount wins
    with pytest.raises(InvalidArgument, match="propagation"):
        plan_mounts({}, {"Binds": ["vol:/x:rshared"]})
    with pytest.raises(InvalidArgument, match="nocopy"):
        plan_mounts({}, {"Binds": ["/srv:/x:nocopy"]})
    with pytest.raises(InvalidArgument, match="absolute"):
        plan_mounts({"Volumes": {"rel": {}}}, {})
    with pytest.raises(NotImplementedFeature, match="Subpath"):
        plan_mounts({}, {"Mounts": [{"Type": "volume", "Target": "/x", "VolumeOptions": {"Subpath": "a"}}]})


def test_spec_takes_resolved_volumes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    vol = {"destination": "/data", "type": "bind", "source": "/vols/v/_data", "options": ["rbind", "rprivate", "ro"]}
    host = {"Binds": ["v:/data:ro", f"{tmp_path}:/host"], "Mounts": [{"Type": "volume", "Target": "/anon"}]}
    anon = {"destination": "/anon", "type": "bind", "source": "/vols/a/_data", "options": ["rbind", "rprivate"]}
    spec = specgen.build_spec("c" * 64, {"Cmd": ["true"]}, host, {}, str(rootfs), {}, volumes=[vol, anon])
    by_dest = {m["destination"]: m for m in spec["mounts"]}
    assert by_dest["/data"] == vol and by_dest["/anon"] == anon and by_dest["/host"]["source"] == str(tmp_path)
    with pytest.raises(NotImplementedFeature, match="volume 'v'"):
        specgen.build_spec("c" * 64, {"Cmd": ["true"]}, host, {}, str(rootfs), {})
    with pytest.raises(InvalidArgument, match="duplicate mount point"):
        specgen.build_spec("c" * 64, {"Cmd": ["true"]}, {"Tmpfs": {"/data": ""}}, {}, str(rootfs), {}, volumes=[vol])
    with pytest.raises(NotImplementedFeature, match="VolumesFrom"):
        specgen.build_spec("c" * 64, {"Cmd": ["true"]}, {"VolumesFrom": ["x"]}, {}, str(rootfs), {})


def test_mounts_json_shapes() -> None:
    c = Container("c" * 64, "n", "", "busybox", "sha256:x", {}, {}, "runc", mounts=plan_mounts(
        {}, {"Binds": ["/srv:/srv"], "Mounts": [{"Type": "tmpfs", "Target": "/t"}]}))
    c.mounts.append({"type": "volume", "name": "v", "source": "/vols/v/_data", "destination": "/v", "driver": "local",
                     "mode": "z", "rw": True, "propagation": "", "nocopy": False, "copied": True})
    assert mounts_json(c) == [
        {"Type": "bind", "Source": "/srv", "Destination": "/srv", "Mode": "", "RW": True, "Propagation": "rprivate"},
        {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "", "RW": True, "Propagation": ""},
        {"Type": "volume", "Name": "v", "Source": "/vols/v/_data", "Destination": "/v", "Driver": "local", "Mode": "z",
         "RW": True, "Propagation": ""}]


def test_driver_opts() -> None:
    assert parse_driver_opts({}) is None
    bind = parse_driver_opts({"type": "none", "device": "/", "o": "rbind,ro"})
    assert bind is not None and bind.bind and bind.data == ""
    with pytest.raises(InvalidArgument, match='missing required option: "device"'):
        parse_driver_opts({"o": "size=1m", "type": "tmpfs"})
    with pytest.raises(InvalidArgument, match="unknown bind mount options"):
        parse_driver_opts({"type": "none", "device": "/", "o": "bind,size=1"})
