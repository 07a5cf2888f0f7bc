"""dockyardd driven by the real docker CLI: volumes.

docker volume create/ls/inspect/rm/prune; named volumes shared between containers; anonymous
volumes (--mount, the image's VOLUME) and `rm -v`; copy-up from the image; a volume in use;
a tmpfs volume from DriverOpts; --tmpfs and --mount type=tmpfs; --volumes-from; Mounts in
inspect; system df.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_dockyardd_api import Names, daemon, docker, explain, names, needs_containers  # noqa: F401
from dockyardd import Dockyardd

pytestmark = [pytest.mark.root, needs_containers]


class Volumes:
    def __init__(self, daemon: Dockyardd) -> None:
        self.daemon = daemon
        self.names: list[str] = []

    def new(self) -> str:
        name = f"dyv-{os.getpid()}-{len(self.names)}-{time.monotonic_ns() % 10**6}"
        self.names.append(name)
        return name


@pytest.fixture
def vols(daemon: Dockyardd, names: Names) -> Iterator[Volumes]:
    v = Volumes(daemon)
    yield v
    if names.names:  # the containers first: a volume in use cannot be removed
        daemon.docker("rm", "--force", "-v", *names.names, timeout=60)
        names.names.clear()
    if v.names:
        daemon.docker("volume", "rm", "--force", *v.names, timeout=60)


def _mountinfo() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def test_volume_create_ls_inspect_rm(daemon: Dockyardd, vols: Volumes) -> None:
    name = vols.new()
    r = docker(daemon, "volume", "create", "--label", "team=blue", name)
    assert r.ok and r.stdout.strip() == name, explain(daemon, r)
    info = json.loads(docker(daemon, "volume", "inspect", name).stdout)[0]
    assert info["Name"] == name and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Labels"] == {"team": "blue"} and info["Options"] is None
    assert info["Mountpoint"] == str(daemon.data_root / "volumes" / name / "_data")
    assert info["CreatedAt"]
    r = docker(daemon, "volume", "ls", "--format", "{{.Name}} {{.Driver}}")
    assert r.ok and f"{name} local" in r.stdout.splitlines(), explain(daemon, r)
    r = docker(daemon, "volume", "ls", "-q", "--filter", "label=team=blue", "--filter", f"name={name}")
    assert r.stdout.split() == [name], explain(daemon, r)
    assert docker(daemon, "volume", "ls", "-q", "--filter", "label=team=red", "--filter", f"name={name}").stdout == ""
    assert name in docker(daemon, "volume", "ls", "-q", "--filter", "dangling=true").stdout.split()
    r = docker(daemon, "volume", "create", "--driver", "convoy", vols.new())
    assert not r.ok and "convoy" in r.stderr
    r = docker(daemon, "volume", "create", "--opt", "bogus=1", vols.new())
    assert not r.ok and 'invalid option: "bogus"' in r.stderr
    r = docker(daemon, "volume", "rm", name)
    assert r.ok and r.stdout.strip() == name, explain(daemon, r)
    r = docker(daemon, "volume", "inspect", name)
    assert not r.ok and "no such volume" in r.stderr


def test_named_volume_shared_between_containers(daemon: Dockyardd, names: Names, vols: Volumes) -> None:
    vol = vols.new()
    r = docker(daemon, "run", "--rm", "-v", f"{vol}:/data", "busybox", "sh", "-c", "echo x > /data/f")
    assert r.ok, explain(daemon, r)
    r = docker(daemon, "run", "--rm", "-v", f"{vol}:/data:ro", "busybox", "sh", "-c", "cat /data/f; touch /data/g")
    assert r.stdout == "x\n" and "Read-only file system" in r.stderr, explain(daemon, r)
    # in use, even by a stopped container: dockerd's 409
    c = names.new()
    assert docker(daemon, "create", "--name", c, "-v", f"{vol}:/data", "busybox", "true").ok
    cid = daemon.inspect(c)["Id"]
    r = docker(daemon, "volume", "rm", vol)
    assert not r.ok and f"volume is in use - [{cid}]" in r.stderr, explain(daemon, r)
    assert vol not in docker(daemon, "volume", "ls", "-q", "--filter", "dangling=true").stdout.split()
    mounts = daemon.inspect(c)["Mounts"]
    assert mounts == [{"Type": "volume", "Name": vol, "Source": str(daemon.data_root / "volumes" / vol / "_data"),
                       "Destination": "/data", "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""}]
    assert docker(daemon, "rm", "-v", c).ok  # -v never removes a named volume
    names.names.remove(c)
    assert docker(daemon, "volume", "inspect", vol).ok


def test_anonymous_volumes_and_rm_v(daemon: Dockyardd, names: Names, vols: Volumes) -> None:
    c = names.new()
    r = docker(daemon, "run", "--name", c, "--mount", "type=volume,dst=/x", "busybox", "sh", "-c", "echo a > /x/a")
    assert r.ok, explain(daemon, r)
    info = daemon.inspect(c)
    [m] = info["Mounts"]
    anon = m["Name"]
    assert m["Type"] == "volume" and len(anon) == 64 and m["Destination"] == "/x" and m["RW"] and m["Mode"] == ""
    assert Path(m["Source"], "a").read_text() == "a\n"
    labels = json.loads(docker(daemon, "volume", "inspect", anon).stdout)[0]["Labels"]
    assert "com.docker.volume.anonymous" in labels
    assert docker(daemon, "rm", "-v", c).ok
    names.names.remove(c)
    assert not docker(daemon, "volume", "inspect", anon).ok
    # --rm takes the anonymous volumes with it
    r = docker(daemon, "run", "--rm", "--mount", "type=volume,dst=/y", "busybox", "sh", "-c",
               "grep ' /y ' /proc/self/mountinfo | wc -l")
    assert r.ok and r.stdout.strip() == "1", explain(daemon, r)
    left = docker(daemon, "volume", "ls", "-q", "--filter", "label=com.docker.volume.anonymous").stdout.split()
    assert left == [], left


def test_copy_up_from_image(daemon: Dockyardd, vols: Volumes) -> None:
    vol = vols.new()
    r = docker(daemon, "run", "--rm", "-v", f"{vol}:/etc", "busybox", "sh", "-c", "ls /etc")
    assert r.ok and "passwd" in r.stdout.split() and "group" in r.stdout.split(), explain(daemon, r)
    data = daemon.data_root / "volumes" / vol / "_data"
    assert (data / "passwd").read_text().startswith("root:")
    assert oct(os.stat(data).st_mode & 0o7777) == oct(0o755)
    # nocopy: an empty volume stays empty
    empty = vols.new()
    r = docker(daemon, "run", "--rm", "-v", f"{empty}:/etc:nocopy", "busybox", "ls", "-A", "/etc")
    assert r.ok and r.stdout.split() in ([], ["hostname", "hosts", "resolv.conf"]), explain(daemon, r)
    assert not (daemon.data_root / "volumes" / empty / "_data" / "passwd").exists()


def test_image_volume_gets_an_anonymous_volume(daemon: Dockyardd, names: Names, vols: Volumes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN mkdir /seed && echo seeded > /seed/f\nVOLUME /seed\n")
    tag = f"dyv-image-{os.getpid()}"
    r = docker(daemon, "build", "-q", "-t", tag, str(tmp_path), timeout=120)
    if not r.ok:
        pytest.skip(f"cannot build the test image: {r.stderr.strip()[:200]}")
    try:
        c = names.new()
        r = docker(daemon, "run", "--name", c, tag, "cat", "/seed/f")
        assert r.ok and r.stdout == "seeded\n", explain(daemon, r)
        [m] = daemon.inspect(c)["Mounts"]
        assert m["Type"] == "volume" and m["Destination"] == "/seed"
        # a bind on the same path replaces the image's volume
        b = names.new()
        r = docker(daemon, "run", "--name", b, "-v", f"{tmp_path}:/seed", tag, "ls", "/seed")
        assert r.ok and "Dockerfile" in r.stdout, explain(daemon, r)
        assert [x["Type"] for x in daemon.inspect(b)["Mounts"]] == ["bind"]
        assert docker(daemon, "rm", "-v", c, b).ok
        names.names.clear()
        assert not docker(daemon, "volume", "inspect", m["Name"]).ok
    finally:
        docker(daemon, "rmi", "-f", tag)


def test_tmpfs_driver_opts_volume(daemon: Dockyardd, names: Names, vols: Volumes) -> None:
    vol = vols.new()
    r = docker(daemon, "volume", "create", "--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
               "--opt", "o=size=64m", vol)
    assert r.ok, explain(daemon, r)
    info = json.loads(docker(daemon, "volume", "inspect", vol).stdout)[0]
    assert info["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=64m"}
    mountpoint = info["Mountpoint"]
    c = names.new()
    r = docker(daemon, "run", "-d", "--name", c, "-v", f"{vol}:/t", "busybox", "sh", "-c",
               "df -k /t | tail -1; echo hi > /t/f; sleep 300")
    assert r.ok, explain(daemon, r)
    assert f" {mountpoint} " in _mountinfo()  # mounted while the container uses it
    r = docker(daemon, "exec", c, "sh", "-c", "grep ' /t ' /proc/mounts")
    assert r.ok and "tmpfs" in r.stdout and "size=65536k" in r.stdout, explain(daemon, r)
    assert docker(daemon, "rm", "-f", c).ok
    names.names.remove(c)
    assert f" {mountpoint} " not in _mountinfo()  # and unmounted when it goes
    r = docker(daemon, "run", "--rm", "-v", f"{vol}:/t", "busybox", "ls", "/t")
    assert r.ok and r.stdout == "", explain(daemon, r)  # a tmpfs starts empty each time
    assert f" {mountpoint} " not in _mountinfo()


def test_tmpfs_mounts(daemon: Dockyardd, names: Names) -> None:
    c = names.new()
    r = docker(daemon, "run", "--name", c, "--tmpfs", "/a:size=1m,mode=700", "--mount",
               "type=tmpfs,dst=/b,tmpfs-size=2097152,tmpfs-mode=1770", "busybox", "sh", "-c",
               "grep -E ' /(a|b) ' /proc/mounts; stat -c '%n %a' /a /b")
    assert r.ok, explain(daemon, r)
    assert "/a tmpfs" in r.stdout and "size=1024k" in r.stdout and "size=2048k" in r.stdout
    assert "/a 700" in r.stdout and "/b 1770" in r.stdout
    assert daemon.inspect(c)["Mounts"] == [{"Type": "tmpfs", "Source": "", "Destination": "/b", "Mode": "",
                                            "RW": True, "Propagation": ""}]


def test_volumes_from_and_bind_in_inspect(daemon: Dockyardd, names: Names, vols: Volumes, tmp_path) -> None:  # type: ignore[no-untyped-def]
    vol = vols.new()
    src = names.new()
    r = docker(daemon, "create", "--name", src, "-v", f"{vol}:/shared", "-v", f"{tmp_path}:/host:ro", "busybox", "true")
    assert r.ok, explain(daemon, r)
    mounts = {m["Destination"]: m for m in daemon.inspect(src)["Mounts"]}
    assert mounts["/host"] == {"Type": "bind", "Source": str(tmp_path), "Destination": "/host", "Mode": "ro",
                               "RW": False, "Propagation": "rprivate"}
    r = docker(daemon, "run", "--rm", "--volumes-from", f"{src}:ro", "busybox", "sh", "-c",
               "ls -d /shared /host; touch /shared/x 2>&1 | grep -c Read-only")
    assert r.ok and r.stdout.split() == ["/host", "/shared", "1"], explain(daemon, r)


def test_volume_prune(daemon: Dockyardd, names: Names, vols: Volumes) -> None:
    named, used = vols.new(), vols.new()
    assert docker(daemon, "volume", "create", "--label", "prune=me", named).ok
    c = names.new()
    assert docker(daemon, "create", "--name", c, "-v", f"{used}:/u", "--mount", "type=volume,dst=/anon",
                  "busybox", "true").ok
    anon = [m["Name"] for m in daemon.inspect(c)["Mounts"] if m["Destination"] == "/anon"][0]
    assert docker(daemon, "rm", c).ok  # without -v: the anonymous volume stays
    names.names.remove(c)
    r = docker(daemon, "volume", "prune", "-f")  # API >= 1.42: only anonymous volumes
    assert r.ok and anon in r.stdout and named not in r.stdout and used not in r.stdout, explain(daemon, r)
    r = docker(daemon, "volume", "prune", "-f", "-a", "--filter", "label=prune=me")
    assert r.ok and named in r.stdout.split() and used not in r.stdout, explain(daemon, r)
    assert not docker(daemon, "volume", "inspect", named).ok and docker(daemon, "volume", "inspect", used).ok


def test_system_df_lists_volumes(daemon: Dockyardd, vols: Volumes) -> None:
    vol = vols.new()
    assert docker(daemon, "run", "--rm", "-v", f"{vol}:/d", "busybox", "sh", "-c", "head -c 8192 /dev/zero > /d/z").ok
    r = docker(daemon, "system", "df", "-v", "--format", "{{json .Volumes}}")
    assert r.ok, explain(daemon, r)
    found = [v for v in json.loads(r.stdout) if v["Name"] == vol]
    assert found and found[0]["Links"] == "0" and found[0]["Size"] != "0B", found


def test_dockyard_cli_volume_commands(daemon: Dockyardd, vols: Volumes) -> None:
    from test_cli import dockyard

    name = vols.new()
    r = dockyard(daemon, "volume", "create", "--label", "k=v", "-o", "type=tmpfs", "-o", "device=tmpfs",
                 "-o", "o=size=1m", name)
    assert r.returncode == 0 and r.stdout.strip() == name, r
    r = dockyard(daemon, "volume", "ls", "--filter", f"name={name}")
    assert r.stdout.splitlines() == ["DRIVER   VOLUME NAME", f"local    {name}"], r
    info = json.loads(dockyard(daemon, "volume", "inspect", name).stdout)[0]
    assert info["Labels"] == {"k": "v"} and info["Options"]["o"] == "size=1m"
    r = dockyard(daemon, "run", "--rm", "-v", f"{name}:/t", "-v", "/anon", "busybox", "sh", "-c",
                 "grep -c -E ' /(t|anon) ' /proc/mounts")
    assert r.returncode == 0 and r.stdout.strip() == "2", r
    r = dockyard(daemon, "volume", "rm", name, "no-such-volume-here")
    assert r.returncode == 1 and r.stdout.strip() == name and "no such volume" in r.stderr, r
    anon = vols.new()
    assert dockyard(daemon, "volume", "create", anon).returncode == 0
    r = dockyard(daemon, "volume", "prune", "-a", "--filter", "label!=keep")
    assert r.returncode == 0 and anon in r.stdout and "Total reclaimed space" in r.stdout, r
