"""What a process inside a dockyard-runtime container can and cannot see or do."""

from __future__ import annotations

import array
import json
import os
import socket
import subprocess
import time

import pytest

from dockyard.security.capabilities import CAP_NAMES

pytestmark = pytest.mark.root


def run_in(runtime, bundle, script, **spec_changes):
    bundle.spec["process"]["args"] = ["sh", "-c", script]
    for key, value in spec_changes.items():
        bundle.spec[key] = value
    bundle.save()
    return runtime("run", "--bundle", bundle.path, "iso", check=False)


def test_pid_namespace_shows_only_the_container(runtime, bundle):
    out = run_in(runtime, bundle, "ps -o pid,comm > /tmp/ps; cat /tmp/ps")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    assert rows[0] == ["1", "sh"]
    assert [r[1] for r in rows] == ["sh", "ps"]


def test_hostname_and_uts(runtime, bundle):
    bundle.spec["hostname"] = "box"
    assert run_in(runtime, bundle, "hostname").stdout.strip() == "box"


def test_masked_and_readonly_paths(runtime, bundle):
    bundle.spec["linux"]["maskedPaths"].append("/proc/cpuinfo")
    out = run_in(runtime, bundle, "wc -c < /proc/cpuinfo; ls /sys/firmware | wc -l; "
                                  "echo 1 > /proc/sys/kernel/ns_last_pid && echo writable; "
                                  "touch /sys/firmware/x && echo fw-writable; echo done")
    lines = out.stdout.split()
    assert lines[0] == "0" and lines[1] == "0"
    assert "writable" not in out.stdout and "fw-writable" not in out.stdout
    assert lines[-1] == "done"
    assert "Read-only file system" in out.stderr


def test_readonly_rootfs(runtime, bundle):
    bundle.spec["root"]["readonly"] = True
    out = run_in(runtime, bundle, "touch /newfile && echo created; touch /dev/shm/ok && echo shm-ok")
    assert "created" not in out.stdout and "shm-ok" in out.stdout
    assert "Read-only file system" in out.stderr


def test_capabilities_follow_the_spec(runtime, bundle):
    wanted = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    bundle.spec["process"]["capabilities"] = {k: wanted for k in ("bounding", "effective", "permitted")}
    out = run_in(runtime, bundle, "grep -E 'Cap(Eff|Bnd)' /proc/self/status")
    mask = sum(1 << CAP_NAMES[c] for c in wanted)
    for line in out.stdout.splitlines():
        assert int(line.split()[1], 16) == mask, out.stdout


def test_user_groups_and_umask(runtime, bundle):
    bundle.spec["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 65534], "umask": 0o077}
    bundle.spec["process"]["env"] = [e for e in bundle.spec["process"]["env"] if not e.startswith("HOME=")]
    out = run_in(runtime, bundle, "id; umask; echo $HOME")
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()
    assert first[0] == "uid=1000(user) gid=1000(user) groups=5,65534(nogroup)"
    assert first[1] == "0077"
    assert first[2] == "/home/user"


def test_rlimits_and_no_new_privs(runtime, bundle):
    bundle.spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]
    bundle.spec["process"]["noNewPrivileges"] = True
    out = run_in(runtime, bundle, "ulimit -n; ulimit -Hn; grep NoNewPrivs /proc/self/status")
    assert out.stdout.split() == ["123", "456", "NoNewPrivs:", "1"]


def test_seccomp_profile_is_enforced(runtime, bundle):
    bundle.spec["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                     {"names": ["unshare"], "action": "SCMP_ACT_ERRNO"}],
    }
    out = run_in(runtime, bundle, "mkdir /tmp/x && echo made; unshare -U true && echo unshared; echo end")
    assert out.stdout.split() == ["end"]
    assert "Operation not permitted" in out.stderr


def test_no_host_descriptors_leak_into_the_container(runtime, bundle):
    # keep an extra inheritable descriptor open in the caller: it must not reach the container
    r, w = os.pipe()
    os.set_inheritable(w, True)
    try:
        bundle.spec["process"]["args"] = ["sh", "-c", "ls /proc/self/fd; readlink /proc/self/cwd"]
        bundle.save()
        out = runtime("run", "--bundle", bundle.path, "fds", pass_fds=(w,))
    finally:
        os.close(r)
        os.close(w)
    lines = out.stdout.split()
    # 0-2 and the descriptor `ls` opens on the directory; nothing else
    assert lines[:-1] == ["0", "1", "2", "3"], out.stdout
    assert lines[-1] == "/"


def test_runtime_processes_in_the_container_are_not_dumpable(runtime, bundle):
    """The init is the host's interpreter until start: its /proc/<pid>/exe must be out of reach."""
    bundle.spec["process"]["args"] = ["true"]
    bundle.save()
    runtime("create", "--bundle", bundle.path, "c1")
    pid = runtime.state("c1")["pid"]
    assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath("/proc/self/exe") or "python" in os.readlink(
        f"/proc/{pid}/exe")  # the init is still the interpreter until start
    out = runtime("exec", "c1", "sh", "-c", "ls -l /proc/1/exe 2>&1; cat /proc/1/exe > /dev/null && echo readable",
                  check=False)
    assert "readable" not in out.stdout
    assert "Permission denied" in out.stdout + out.stderr
    runtime("delete", "--force", "c1")


def test_the_runtime_interpreter_is_immutable():
    """Even a container holding CAP_SYS_PTRACE, which can open /proc/<pid>/exe of a runtime process,
    cannot write through it: the native front and the interpreter it hands over to are
    immutable copies."""
    import fcntl
    import struct

    from dockyard.shim.inproc import native_front_launcher
    from runtime_helpers import RUNTIME

    launcher = native_front_launcher(RUNTIME)
    assert launcher is not None, f"{RUNTIME} is not the native front (was it built by scripts/setup.sh?)"
    with open(launcher) as f:
        interpreter = f.readline()[2:].split()[0]
    FS_IOC_GETFLAGS, FS_IMMUTABLE_FL = 0x80086601, 0x10
    for executable in (os.path.realpath(RUNTIME), interpreter):
        fd = os.open(executable, os.O_RDONLY)
        try:
            flags = struct.unpack("l", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8))[0]
        finally:
            os.close(fd)
        assert flags & FS_IMMUTABLE_FL, f"{executable} is not immutable"
        with pytest.raises(PermissionError):
            open(executable, "ab").close()


def test_user_namespace_with_id_mappings(runtime, bundle):
    linux = bundle.spec["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux.pop("resources", None)
    subprocess.run(["chown", "-R", "100000:100000", bundle.rootfs], check=True)
    # the container's root is uid 100000 on the host: it must be able to reach its rootfs
    path = bundle.path
    while path != "/tmp":
        os.chmod(path, os.stat(path).st_mode | 0o711)
        path = os.path.dirname(path)
    out = run_in(runtime, bundle, "id -u; cat /proc/self/uid_map; ls /dev/null")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "100000", "65536"]


def test_terminal_through_console_socket(runtime, bundle, tmp_path):
    path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    bundle.spec["process"]["terminal"] = True
    bundle.spec["process"]["consoleSize"] = {"height": 40, "width": 100}
    bundle.spec["process"]["args"] = ["sh", "-c", "tty; stty size; read x; echo got:$x"]
    bundle.save()
    try:
        runtime("create", "--bundle", bundle.path, "--console-socket", path, "tty1")
        conn, _ = server.accept()
        fds = array.array("i")
        _, anc, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(4))
        fds.frombytes(anc[0][2][:4])
        master = fds[0]
        conn.close()
        runtime("start", "tty1")
        os.write(master, b"hello\n")
        output = b""
        deadline = time.monotonic() + 10
        while b"got:hello" not in output and time.monotonic() < deadline:
            try:
                output += os.read(master, 4096)
            except OSError:
                break
        os.close(master)
    finally:
        server.close()
    text = output.decode()
    assert "/dev/console" in text or "/dev/pts/0" in text
    assert "40 100" in text
    assert "got:hello" in text


def test_cgroup_limits_are_applied(runtime, bundle):
    bundle.spec["linux"]["resources"] = {"memory": {"limit": 64 * 1024 * 1024}, "pids": {"limit": 20}}
    bundle.spec["process"]["args"] = ["sleep", "100"]
    bundle.save()
    runtime("run", "-d", "--bundle", bundle.path, "cg")
    out = runtime("exec", "cg", "sh", "-c",
                  "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max")
    assert out.stdout.split() == [str(64 * 1024 * 1024), "20"]
    stats = json.loads(runtime("events", "--stats", "cg").stdout)
    assert stats["type"] == "stats" and stats["data"]["pids"]["current"] >= 1
    runtime("delete", "--force", "cg")


def test_a_leaked_host_directory_cannot_become_the_cwd(runtime, bundle, tmp_path):
    """CVE-2024-21626 class: cwd set to /proc/self/fd/N where N is a host directory."""
    host_dir = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.set_inheritable(host_dir, True)
        bundle.spec["process"]["cwd"] = f"/proc/self/fd/{host_dir}"
        bundle.spec["process"]["args"] = ["sh", "-c", "pwd; ls"]
        bundle.save()
        out = runtime("run", "--bundle", bundle.path, "cve", pass_fds=(host_dir,), check=False)
    finally:
        os.close(host_dir)
    assert out.returncode != 0
    assert "bundle" not in out.stdout  # the host directory's listing never appears
    assert "cwd" in out.stderr


def test_joining_another_containers_network_namespace_by_path(runtime, bundle, tmp_path):
    bundle.spec["process"]["args"] = ["sleep", "100"]
    bundle.spec["linux"]["sysctl"] = {"net.ipv4.ip_unprivileged_port_start": "80"}
    bundle.save()
    runtime("run", "-d", "--bundle", bundle.path, "first")
    first_pid = runtime.state("first")["pid"]
    from runtime_helpers import make_bundle

    second = make_bundle(str(tmp_path / "second"), ["sh", "-c", "cat /proc/sys/net/ipv4/ip_unprivileged_port_start"])
    for ns in second.spec["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = f"/proc/{first_pid}/ns/net"
    second.save()
    out = runtime("run", "--bundle", second.path, "second")
    assert out.stdout.strip() == "80"  # the sysctl set inside the first container's namespace
    runtime("delete", "--force", "first")


def test_bind_mounts_with_options_and_oom_score(runtime, bundle, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "data").write_text("from the host\n")
    bundle.spec["mounts"].append({"destination": "/data", "type": "bind", "source": str(shared),
                                  "options": ["rbind", "ro", "rprivate"]})
    bundle.spec["process"]["oomScoreAdj"] = 500
    out = run_in(runtime, bundle, "cat /data/data; touch /data/x && echo wrote; cat /proc/self/oom_score_adj")
    assert out.stdout.split("\n")[0] == "from the host"
    assert "wrote" not in out.stdout and "500" in out.stdout
    assert not (shared / "x").exists()
