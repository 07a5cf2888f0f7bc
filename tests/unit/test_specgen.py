"""services.specgen against Docker's behaviour for the same `docker run` flags."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import InvalidArgument, NotImplementedFeature
from dockyard.security.capabilities import CAP_NAMES, last_cap
from dockyard.services import specgen
from dockyard.services.model import ContainerConfig, HostConfig

CID = "0123456789abcdef" * 4
DOCKER_DEFAULT_CAPS = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                       "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                       "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}


@pytest.fixture
def rootfs(tmp_path: Path) -> str:
    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/sh\n"
                                "app:x:1000:1000::/home/app:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nwww:x:33:\napp:x:1000:\naudio:x:29:app\nvideo:x:44:app,www\n")
    return str(tmp_path / "rootfs")


def spec(rootfs: str, config: dict[str, Any] | None = None, host: dict[str, Any] | None = None,
         image: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    image = {"Cmd": ["sh"], "Env": ["PATH=/usr/bin:/bin"]} if image is None else image
    return specgen.build_spec(CID, config or {}, host or {}, image, rootfs, kw.pop("files", {}), **kw)


def test_default_capabilities_match_docker_mask(rootfs: str) -> None:
    caps = spec(rootfs)["process"]["capabilities"]
    assert set(caps["bounding"]) == DOCKER_DEFAULT_CAPS == set(caps["effective"]) == set(caps["permitted"])
    assert "inheritable" not in caps and "ambient" not in caps
    assert sum(1 << CAP_NAMES[c] for c in caps["effective"]) == 0xA80425FB


@pytest.mark.parametrize(("add", "drop", "expect"), [
    (["NET_ADMIN"], ["chown"], DOCKER_DEFAULT_CAPS - {"CAP_CHOWN"} | {"CAP_NET_ADMIN"}),
    ([], ["ALL"], set()),
    (["SYS_ADMIN"], ["ALL"], {"CAP_SYS_ADMIN"}),
    (["CAP_KILL"], ["KILL"], DOCKER_DEFAULT_CAPS),  # an add wins over the same drop
])
def test_cap_add_drop(rootfs: str, add: list[str], drop: list[str], expect: set[str]) -> None:
    assert set(spec(rootfs, host={"CapAdd": add, "CapDrop": drop})["process"]["capabilities"]["effective"]) == expect


def test_cap_add_all_and_privileged(rootfs: str) -> None:
    every = {n for n, v in CAP_NAMES.items() if v <= last_cap()}
    assert set(spec(rootfs, host={"CapAdd": ["ALL"], "CapDrop": ["MKNOD"]})["process"]["capabilities"]["bounding"]) \
        == every - {"CAP_MKNOD"}
    s = spec(rootfs, host={"Privileged": True})
    assert set(s["process"]["capabilities"]["bounding"]) == every
    assert "seccomp" not in s["linux"] and "maskedPaths" not in s["linux"] and "readonlyPaths" not in s["linux"]
    assert s["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert any(d["path"] == "/dev/null" for d in s["linux"]["devices"])
    sysfs = next(m for m in s["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sysfs["options"]


def test_unknown_capability(rootfs: str) -> None:
    with pytest.raises(InvalidArgument, match="FOO"):
        spec(rootfs, host={"CapAdd": ["FOO"]})


def test_masked_readonly_paths_and_default_mounts(rootfs: str) -> None:
    s = spec(rootfs)
    assert "/proc/kcore" in s["linux"]["maskedPaths"] and "/sys/firmware" in s["linux"]["maskedPaths"]
    assert len(s["linux"]["maskedPaths"]) == 12
    assert s["linux"]["readonlyPaths"] == ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    by_dest = {m["destination"]: m for m in s["mounts"]}
    assert [m["destination"] for m in s["mounts"]] == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup",
                                                        "/dev/mqueue", "/dev/shm"]
    assert "size=67108864" in by_dest["/dev/shm"]["options"]
    assert "ro" in by_dest["/sys"]["options"] and "ro" in by_dest["/sys/fs/cgroup"]["options"]
    shm = {m["destination"]: m for m in spec(rootfs, host={"ShmSize": 1 << 20})["mounts"]}["/dev/shm"]
    assert "size=1048576" in shm["options"]


def test_namespaces_and_cgroups_path(rootfs: str) -> None:
    s = spec(rootfs)
    assert s["linux"]["cgroupsPath"] == f"/dockyard/{CID}"
    assert {n["type"] for n in s["linux"]["namespaces"]} == {"mount", "network", "ipc", "pid", "uts", "cgroup"}
    s = spec(rootfs, host={"NetworkMode": "host", "PidMode": "host"}, netns_path="/run/netns/x")
    assert {n["type"] for n in s["linux"]["namespaces"]} == {"mount", "ipc", "uts", "cgroup"}
    s = spec(rootfs, host={"NetworkMode": "none"}, netns_path="/run/netns/x", cgroup_parent="/p/")
    assert {"type": "network", "path": "/run/netns/x"} in s["linux"]["namespaces"]
    assert s["linux"]["cgroupsPath"] == f"/p/{CID}"
    with pytest.raises(InvalidArgument, match="PidMode.*not known"):
        spec(rootfs, host={"PidMode": "container:abc"})
    s = spec(rootfs, host={"PidMode": "container:abc", "IpcMode": "container:abc"},
             joined={"pid": "/proc/7/ns/pid", "ipc": "/proc/7/ns/ipc", "shm": "/data/abc/shm"})
    assert {"destination": "/dev/shm", "type": "bind", "source": "/data/abc/shm",
            "options": ["rbind", "rprivate"]} in s["mounts"]
    with pytest.raises(InvalidArgument, match="shm-size and ipc container"):
        spec(rootfs, host={"IpcMode": "container:abc", "ShmSize": 1 << 20}, joined={"ipc": "/x", "shm": "/y"})
    assert {"type": "pid", "path": "/proc/7/ns/pid"} in s["linux"]["namespaces"]
    assert {"type": "ipc", "path": "/proc/7/ns/ipc"} in s["linux"]["namespaces"]
    with pytest.raises(InvalidArgument, match="UTSMode"):
        spec(rootfs, host={"UTSMode": "container:abc"})


def test_env_hostname_tty(rootfs: str) -> None:
    s = spec(rootfs, config={"Env": ["A=1", "PATH=/x"], "Tty": True},
             image={"Cmd": ["sh"], "Env": ["A=0", "B=2"]})
    assert s["process"]["env"] == ["PATH=/x", f"HOSTNAME={CID[:12]}", "TERM=xterm", "A=1", "B=2"]
    assert s["hostname"] == CID[:12] and s["process"]["terminal"] is True
    s = spec(rootfs, config={"Hostname": "box"}, image={"Cmd": ["sh"]})
    assert s["process"]["env"] == [f"PATH={specgen.DEFAULT_PATH}", "HOSTNAME=box"] and s["hostname"] == "box"


def test_entrypoint_cmd_resolution(rootfs: str) -> None:
    image = {"Entrypoint": ["/ep"], "Cmd": ["a"]}
    assert spec(rootfs, image=image)["process"]["args"] == ["/ep", "a"]
    assert spec(rootfs, {"Cmd": ["b"]}, image=image)["process"]["args"] == ["/ep", "b"]
    assert spec(rootfs, {"Entrypoint": ["/x"]}, image=image)["process"]["args"] == ["/x"]
    assert spec(rootfs, {"Entrypoint": [""], "Cmd": ["ls"]}, image=image)["process"]["args"] == ["ls"]
    with pytest.raises(InvalidArgument, match="no command"):
        spec(rootfs, image={})
    s = spec(rootfs, host={"Init": True}, init_path="/usr/bin/tini-static")
    assert s["process"]["args"] == ["/sbin/docker-init", "--", "sh"]
    assert {"destination": "/sbin/docker-init", "type": "bind", "source": "/usr/bin/tini-static",
            "options": ["bind", "ro"]} in s["mounts"]


def test_working_dir(rootfs: str) -> None:
    assert spec(rootfs)["process"]["cwd"] == "/"
    assert spec(rootfs, image={"Cmd": ["sh"], "WorkingDir": "/srv"})["process"]["cwd"] == "/srv"
    assert spec(rootfs, {"WorkingDir": "/w/"})["process"]["cwd"] == "/w"
    with pytest.raises(InvalidArgument, match="absolute"):
        spec(rootfs, {"WorkingDir": "rel"})


@pytest.mark.parametrize(("user", "group_add", "expect"), [
    ("", [], {"uid": 0, "gid": 0}),
    ("app", [], {"uid": 1000, "gid": 1000, "additionalGids": [29, 44]}),
    ("33", [], {"uid": 33, "gid": 33, "additionalGids": [44]}),
    ("4242", [], {"uid": 4242, "gid": 0}),
    ("app:www", ["audio", "7"], {"uid": 1000, "gid": 33, "additionalGids": [29, 44, 7]}),
    ("1:2", [], {"uid": 1, "gid": 2}),
])
def test_user_lookup(rootfs: str, user: str, group_add: list[str], expect: dict[str, Any]) -> None:
    assert spec(rootfs, {"User": user}, {"GroupAdd": group_add})["process"]["user"] == expect


def test_user_from_image_and_unknown(rootfs: str) -> None:
    assert spec(rootfs, image={"Cmd": ["sh"], "User": "www"})["process"]["user"]["uid"] == 33
    with pytest.raises(InvalidArgument, match="nobody"):
        spec(rootfs, {"User": "nobody"})
    with pytest.raises(InvalidArgument, match="nogroup"):
        spec(rootfs, {"User": "app:nogroup"})


def test_resources(rootfs: str) -> None:
    r = spec(rootfs, host={"Memory": 64 << 20, "NanoCpus": 1_500_000_000, "CpuShares": 512, "PidsLimit": 100,
                           "CpusetCpus": "0", "BlkioWeight": 300, "MemoryReservation": 32 << 20})["linux"]["resources"]
    assert r["memory"] == {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20}
    assert r["cpu"] == {"quota": 150000, "period": 100000, "shares": 512, "cpus": "0"}
    assert r["pids"] == {"limit": 100} and r["blockIO"] == {"weight": 300}
    assert r["devices"][0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 136, "access": "rwm"} in r["devices"]
    r = spec(rootfs, host={"Memory": 64 << 20, "MemorySwap": -1, "PidsLimit": -1})["linux"]["resources"]
    assert r["memory"] == {"limit": 64 << 20, "swap": -1} and "pids" not in r
    for bad in ({"Memory": 64 << 20, "MemorySwap": 1 << 20}, {"NanoCpus": 10**9, "CpuQuota": 5000},
                {"Memory": 1024}, {"BlkioWeight": 5}):
        with pytest.raises(InvalidArgument):
            spec(rootfs, host=bad)


def test_ulimits_oom_sysctls_readonly(rootfs: str) -> None:
    s = spec(rootfs, host={"Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}], "OomScoreAdj": 500,
                           "Sysctls": {"net.ipv4.ip_forward": "1"}, "ReadonlyRootfs": True},
             files={"hosts": "/h/hosts"})
    assert s["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024}]
    assert s["process"]["oomScoreAdj"] == 500 and s["linux"]["sysctl"]["net.ipv4.ip_forward"] == "1"
    assert s["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"] == "0"
    assert "sysctl" not in spec(rootfs, host={"NetworkMode": "host"})["linux"]
    assert s["root"]["readonly"] is True
    assert {"destination": "/etc/hosts", "type": "bind", "source": "/h/hosts",
            "options": ["rbind", "rprivate", "ro"]} in s["mounts"]
    with pytest.raises(InvalidArgument, match="vm.swappiness"):
        spec(rootfs, host={"Sysctls": {"vm.swappiness": "1"}})
    with pytest.raises(InvalidArgument, match="soft"):
        spec(rootfs, host={"Ulimits": [{"Name": "nofile", "Soft": 9, "Hard": 1}]})


def test_binds_mounts_tmpfs(rootfs: str, tmp_path: Path) -> None:
    src = str(tmp_path)
    s = spec(rootfs, host={"Binds": [f"{src}:/data:ro,Z", f"{src}:/a/b"],
                           "Mounts": [{"Type": "tmpfs", "Target": "/scratch", "TmpfsOptions": {"SizeBytes": 1024,
                                                                                                 "Mode": 0o700}},
                                      {"Type": "bind", "Source": src, "Target": "/m", "ReadOnly": True,
                                       "BindOptions": {"Propagation": "rslave"}}],
                           "Tmpfs": {"/run": "rw,exec,size=1m", "/dev/shm": ""}})
    by_dest = {m["destination"]: m for m in s["mounts"]}
    assert by_dest["/data"] == {"destination": "/data", "type": "bind", "source": src,
                                "options": ["rbind", "rprivate", "ro"]}
    assert by_dest["/a/b"]["options"] == ["rbind", "rprivate"]
    assert by_dest["/m"]["options"] == ["rbind", "rslave", "ro"]
    assert by_dest["/scratch"]["options"] == ["noexec", "nosuid", "nodev", "size=1024", "mode=700"]
    assert by_dest["/run"]["options"] == ["exec", "nosuid", "nodev", "rw", "size=1m"]
    assert by_dest["/dev/shm"]["type"] == "tmpfs" and by_dest["/dev/shm"]["source"] == "tmpfs"
    dests = [m["destination"] for m in s["mounts"]]
    assert dests.index("/a/b") > dests.index("/data")
    for bad in ({"Binds": ["vol:/x"]}, {"Binds": [f"{src}:rel"]}, {"Binds": [f"{src}:/x", f"{src}:/x"]},
                {"Mounts": [{"Type": "volume", "Target": "/v"}]}, {"Binds": [f"{src}:/x:bogus"]}):
        with pytest.raises((InvalidArgument, NotImplementedFeature)):
            spec(rootfs, host=bad)


def test_default_seccomp_resolved_for_caps(rootfs: str) -> None:
    sc = spec(rootfs)["linux"]["seccomp"]
    assert sc["defaultAction"] == "SCMP_ACT_ERRNO" and sc["defaultErrnoRet"] == 1
    assert sc["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = {n for r in sc["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r for n in r["names"]}
    assert {"read", "write", "execve", "clone3", "arch_prctl"} & allowed == {"read", "write", "execve", "arch_prctl"}
    assert not {"mount", "unshare", "setns", "reboot", "init_module", "bpf"} & allowed
    assert "ptrace" in allowed  # moby allows it on kernels >= 4.8
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in sc["syscalls"]
    admin = spec(rootfs, host={"CapAdd": ["SYS_ADMIN", "SYS_PTRACE"]})["linux"]["seccomp"]
    allowed = {n for r in admin["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r
               for n in r["names"]}
    assert {"mount", "unshare", "setns", "clone", "clone3", "ptrace"} <= allowed
    assert not any(r.get("errnoRet") == 38 for r in admin["syscalls"])


def test_security_opts(rootfs: str) -> None:
    assert "seccomp" not in spec(rootfs, host={"SecurityOpt": ["seccomp=unconfined"]})["linux"]
    assert spec(rootfs, host={"SecurityOpt": ["no-new-privileges"]})["process"]["noNewPrivileges"] is True
    assert spec(rootfs)["process"]["noNewPrivileges"] is False
    custom = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["chown"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}
    sc = spec(rootfs, host={"SecurityOpt": ["seccomp=" + json.dumps(custom)]})["linux"]["seccomp"]
    assert sc == {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    with pytest.raises(InvalidArgument):
        spec(rootfs, host={"SecurityOpt": ["seccomp={not json"]})
    with pytest.raises(NotImplementedFeature, match="apparmor=foo"):
        spec(rootfs, host={"SecurityOpt": ["apparmor=foo"]})


def test_unsupported_fields_named(rootfs: str) -> None:
    with pytest.raises(NotImplementedFeature, match="VolumesFrom"):
        spec(rootfs, host={"VolumesFrom": ["x"]})
    with pytest.raises(NotImplementedFeature, match="Bogus"):
        spec(rootfs, config={"Bogus": 1})
    with pytest.raises(InvalidArgument, match="Memory"):
        spec(rootfs, host={"Memory": "lots"})
    spec(rootfs, host={"VolumesFrom": None, "PortBindings": {}, "MemorySwappiness": None})


def test_dataclasses_accepted(rootfs: str) -> None:
    s = specgen.build_spec(CID, ContainerConfig(cmd=["true"], stop_signal="SIGINT"), HostConfig(), {}, rootfs, {})
    assert s["process"]["args"] == ["true"] and s["ociVersion"] == "1.1.0"
    assert s["annotations"] == {"org.opencontainers.image.stopSignal": "SIGINT"}


def test_console_size_from_the_create_request() -> None:
    from dockyard.services import specgen

    spec = specgen.build_spec("c1", {"Tty": True, "Cmd": ["sh"]}, {"ConsoleSize": [33, 101]}, {}, "/nonexistent", {})
    assert spec["process"]["consoleSize"] == {"height": 33, "width": 101}
    spec = specgen.build_spec("c1", {"Tty": False, "Cmd": ["sh"]}, {"ConsoleSize": [33, 101]}, {}, "/nonexistent", {})
    assert "consoleSize" not in spec["process"]
    spec = specgen.build_spec("c1", {"Tty": True, "Cmd": ["sh"]}, {"ConsoleSize": [0, 0]}, {}, "/nonexistent", {})
    assert "consoleSize" not in spec["process"]


def test_device_cgroup_rules_become_allow_rules() -> None:
    assert specgen.device_cgroup_rule("c 7:128 rwm") == {"allow": True, "type": "c", "major": 7, "minor": 128,
                                                         "access": "rwm"}
    assert specgen.device_cgroup_rule("b 8:* r") == {"allow": True, "type": "b", "major": 8, "access": "r"}
    assert specgen.device_cgroup_rule("a *:* m") == {"allow": True, "type": "a", "access": "m"}
    for bad in ("x 1:2 rwm", "c 1:2", "c 1:2 rwx", "c 1:2 rr", "c a:2 r", "", 7):
        with pytest.raises(InvalidArgument, match="invalid device cgroup rule"):
            specgen.device_cgroup_rule(bad)
    host = HostConfig.from_docker({"DeviceCgroupRules": ["c 7:128 rwm"]})
    devices = specgen.resources(host)["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    assert devices[-1] == {"allow": True, "type": "c", "major": 7, "minor": 128, "access": "rwm"}
