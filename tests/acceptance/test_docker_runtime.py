"""The real Docker engine drives the runtime under test (`docker run --runtime $RUNTIME`).

Every behaviour checked here is what Docker users see with runc; run the file with
DOCKYARD_TEST_RUNTIME=runc to check the tests themselves, and with the default (dockyard) to
check dockyard-runtime. Assertion messages carry the docker command, its exit code and output.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from docker_engine import DockerCli

pytestmark = [pytest.mark.docker, pytest.mark.root]

IMAGE = "busybox"
# Docker's default capability set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
# NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
DOCKER_DEFAULT_CAPS = "00000000a80425fb"
# Forks 20 background sleeps; PID 1 exiting afterwards ends them all.
FORK_20 = "i=0; while [ $i -lt 20 ]; do sleep 1000 & i=$((i+1)); done; echo forked $i"
# Holds 100 MB in a shell variable.
ALLOCATE_100M = 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo kept ${#x}'


def status_lines(text: str) -> dict[str, str]:
    """/proc/<pid>/status as a mapping."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            found[key.strip()] = value.strip()
    return found


# ---------------------------------------------------------------------------- run


def test_run_returns_output_and_exit_code(docker: DockerCli) -> None:
    r = docker.run(IMAGE, "sh", "-c", "echo hi; echo oops >&2; exit 3")
    assert r.returncode == 3, str(r)
    assert r.stdout == "hi\n", str(r)
    assert "oops" in r.stderr, str(r)


def test_missing_command_exits_127(docker: DockerCli) -> None:
    # Docker maps the runtime's "executable file not found" / "no such file" error to 127.
    r = docker.run(IMAGE, "no-such-command")
    assert r.returncode == 127, str(r)


def test_env_and_workdir(docker: DockerCli) -> None:
    r = docker.run("-e", "GREETING=hello", "-w", "/tmp", IMAGE, "sh", "-c", 'echo "$GREETING $(pwd)"')
    assert (r.returncode, r.stdout) == (0, "hello /tmp\n"), str(r)


def test_stdin_is_forwarded(docker: DockerCli) -> None:
    r = docker.run(IMAGE, "sh", "-c", "tr a-z A-Z", input="quiet words\n")
    assert (r.returncode, r.stdout) == (0, "QUIET WORDS\n"), str(r)


def test_run_with_docker_py(docker: DockerCli, docker_client: Any) -> None:
    container = docker_client.containers.run(
        IMAGE, ["sh", "-c", "echo out; echo err >&2; exit 2"], detach=True,
        runtime=docker.runtime, name=docker.new_name())
    assert container.wait(timeout=60)["StatusCode"] == 2
    assert container.logs(stdout=True, stderr=False) == b"out\n"
    assert container.logs(stdout=False, stderr=True) == b"err\n"


@pytest.mark.slow
def test_interactive_tty(docker: DockerCli) -> None:
    term = docker.terminal("run", "-it", "--rm", "--runtime", docker.runtime,
                           "--name", docker.new_name(), IMAGE, "sh")
    try:
        term.expect(r"/ # ")
        term.send("tty\r")
        term.expect(r"tty\r\n/dev/pts/0\r\n")
        term.send("echo $((6*7))\r")
        term.expect(r"echo \$\(\(6\*7\)\)")  # the terminal echoes what was typed
        term.expect(r"\r\n42\r\n")  # and the shell answers
        term.send("exit 7\r")
        assert term.wait() == 7, term.output
    finally:
        term.close()


# ---------------------------------------------------------------------------- detached, exec, logs


def test_detached_then_exec(docker: DockerCli) -> None:
    name = docker.start(IMAGE, "sleep", "300")
    r = docker("exec", name, "sh", "-c", "echo hi; exit 4")
    assert (r.returncode, r.stdout) == (4, "hi\n"), str(r)
    r = docker("exec", "-u", "65534:65534", "-w", "/tmp", "-e", "A=b", name, "sh", "-c", 'echo $(id -u) $(pwd) $A')
    assert (r.returncode, r.stdout) == (0, "65534 /tmp b\n"), str(r)
    assert docker.inspect(name)["State"]["Running"] is True


def test_exec_with_docker_py(docker: DockerCli, docker_client: Any) -> None:
    name = docker.start(IMAGE, "sleep", "300")
    container = docker_client.containers.get(name)
    result = container.exec_run(["sh", "-c", "echo hi; exit 4"])
    assert (result.exit_code, result.output) == (4, b"hi\n")


@pytest.mark.slow
def test_exec_interactive_tty(docker: DockerCli) -> None:
    name = docker.start(IMAGE, "sleep", "300")
    term = docker.terminal("exec", "-it", name, "sh")
    try:
        term.expect(r"/ # ")
        term.send("tty\r")
        term.expect(r"/dev/pts/\d+\r\n")
        term.send("echo $((6*7))\r")
        term.expect(r"\r\n42\r\n")
        term.send("exit 5\r")
        assert term.wait() == 5, term.output
    finally:
        term.close()


def test_logs(docker: DockerCli) -> None:
    name = docker.start(IMAGE, "sh", "-c", "echo out; echo err >&2")
    assert docker("wait", name).check().stdout.strip() == "0"
    r = docker("logs", name).check()
    assert (r.stdout, r.stderr) == ("out\n", "err\n"), str(r)


# ---------------------------------------------------------------------------- resources


@pytest.mark.slow
def test_memory_limit_is_enforced(docker: DockerCli) -> None:
    r = docker.run("--memory", "32m", IMAGE, "sh", "-c", ALLOCATE_100M.replace("100000000", "1000000"))
    assert (r.returncode, r.stdout) == (0, "kept 1000000\n"), str(r)
    name, r = docker.run_named("--memory", "32m", IMAGE, "sh", "-c", ALLOCATE_100M)
    assert r.returncode == 137, str(r)
    state = docker.inspect(name)["State"]
    assert state["OOMKilled"] is True, state


def test_pids_limit_is_enforced(docker: DockerCli) -> None:
    r = docker.run(IMAGE, "sh", "-c", FORK_20)
    assert (r.returncode, r.stdout) == (0, "forked 20\n"), str(r)
    r = docker.run("--pids-limit", "10", IMAGE, "sh", "-c", FORK_20)
    assert r.returncode != 0 and "can't fork" in r.stderr, str(r)


# ---------------------------------------------------------------------------- security


def test_cap_drop_chown(docker: DockerCli) -> None:
    r = docker.run(IMAGE, "chown", "65534", "/tmp")
    assert r.returncode == 0, str(r)
    r = docker.run("--cap-drop", "CHOWN", IMAGE, "chown", "65534", "/tmp")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, str(r)


def test_cap_add_net_admin(docker: DockerCli) -> None:
    # This kernel has no dummy links, so NET_ADMIN is shown on the container's own loopback.
    add = "ip addr add 10.9.8.7/32 dev lo && ip addr show dev lo"
    r = docker.run(IMAGE, "sh", "-c", add)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, str(r)
    r = docker.run("--cap-add", "NET_ADMIN", IMAGE, "sh", "-c", add)
    assert r.returncode == 0 and "10.9.8.7/32" in r.stdout, str(r)


def test_read_only_root(docker: DockerCli) -> None:
    r = docker.run("--read-only", IMAGE, "touch", "/x")
    assert r.returncode != 0 and "Read-only file system" in r.stderr, str(r)
    r = docker.run("--read-only", "--tmpfs", "/tmp", IMAGE, "sh", "-c", "touch /tmp/x && echo ok")
    assert (r.returncode, r.stdout) == (0, "ok\n"), str(r)


def test_user(docker: DockerCli) -> None:
    r = docker.run("--user", "1000:1000", IMAGE, "id")
    assert r.returncode == 0 and r.stdout.startswith("uid=1000 gid=1000"), str(r)


def test_hostname(docker: DockerCli) -> None:
    r = docker.run("--hostname", "foo", IMAGE, "hostname")
    assert (r.returncode, r.stdout) == (0, "foo\n"), str(r)


def test_ps_shows_only_the_container_processes(docker: DockerCli) -> None:
    r = docker.run(IMAGE, "sh", "-c", "sleep 100 & ps -o pid,comm; true")
    assert r.returncode == 0, str(r)
    # sh, sleep and ps (runtimes differ in how the forked sleep is named before its exec)
    pids = [int(line.split()[0]) for line in r.stdout.splitlines()[1:]]
    assert 1 in pids and len(pids) <= 3 and max(pids) < 100, str(r)


def test_masked_paths(docker: DockerCli) -> None:
    # /proc/kcore is absent on some kernels (this machine's among them); /proc/timer_list is
    # masked too and is never empty on the host.
    script = ("for f in /proc/kcore /proc/timer_list; do [ -e $f ] && echo $f $(cat $f | wc -c); done;"
              " echo firmware $(ls -A /sys/firmware | wc -l)")
    r = docker.run(IMAGE, "sh", "-c", script)
    assert r.returncode == 0, str(r)
    sizes = dict(line.split() for line in r.stdout.splitlines())
    assert sizes.get("/proc/timer_list") == "0", str(r)
    assert sizes.get("/proc/kcore", "0") == "0", str(r)
    assert sizes["firmware"] == "0", str(r)


def test_proc_sys_is_read_only(docker: DockerCli) -> None:
    # domainname is per UTS namespace, so even a runtime that got this wrong harms nothing.
    r = docker.run(IMAGE, "sh", "-c", "echo x > /proc/sys/kernel/domainname")
    assert r.returncode != 0 and "Read-only file system" in r.stderr, str(r)


def test_default_capabilities(docker: DockerCli) -> None:
    r = docker.run(IMAGE, "cat", "/proc/self/status")
    assert r.returncode == 0, str(r)
    status = status_lines(r.stdout)
    caps = {k: status[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    assert caps == {"CapInh": "0000000000000000", "CapPrm": DOCKER_DEFAULT_CAPS,
                    "CapEff": DOCKER_DEFAULT_CAPS, "CapBnd": DOCKER_DEFAULT_CAPS,
                    "CapAmb": "0000000000000000"}, str(r)


def test_default_seccomp_profile(docker: DockerCli) -> None:
    script = "grep '^Seccomp:' /proc/self/status; unshare -U true && echo unshared"
    r = docker.run(IMAGE, "sh", "-c", script)
    assert "Seccomp:\t2" in r.stdout, str(r)
    # The kernel lets anyone create a user namespace; the default profile refuses it without
    # CAP_SYS_ADMIN. Unconfined, the same command works, so the refusal is seccomp's.
    assert "unshared" not in r.stdout and "Operation not permitted" in r.stderr, str(r)
    r = docker.run("--security-opt", "seccomp=unconfined", IMAGE, "sh", "-c", script)
    assert "Seccomp:\t0" in r.stdout and "unshared" in r.stdout, str(r)
    r = docker.run(IMAGE, "mount", "-t", "tmpfs", "none", "/mnt")
    assert r.returncode != 0, str(r)


# ---------------------------------------------------------------------------- lifecycle


def test_pause_unpause(docker: DockerCli) -> None:
    name = docker.start(IMAGE, "sleep", "300")
    docker("pause", name).check()
    state = docker.inspect(name)["State"]
    assert (state["Status"], state["Paused"]) == ("paused", True), state
    r = docker("exec", name, "true")
    assert r.returncode != 0 and "paused" in r.stderr, str(r)
    docker("unpause", name).check()
    state = docker.inspect(name)["State"]
    assert (state["Status"], state["Paused"]) == ("running", False), state
    r = docker("exec", name, "echo", "awake")
    assert (r.returncode, r.stdout) == (0, "awake\n"), str(r)


@pytest.mark.slow
def test_stop_kills_after_the_grace_period(docker: DockerCli) -> None:
    # sleep is PID 1 and has no SIGTERM handler, so the kernel ignores the TERM: only the
    # KILL after the grace period ends it.
    name = docker.start(IMAGE, "sleep", "300")
    start = time.monotonic()
    docker("stop", "-t", "1", name).check()
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 10, f"docker stop -t 1 took {elapsed:.1f}s"
    state = docker.inspect(name)["State"]
    assert (state["Running"], state["ExitCode"]) == (False, 137), state


def test_stop_lets_a_trapping_process_exit(docker: DockerCli) -> None:
    name = docker.start(IMAGE, "sh", "-c", 'trap "exit 0" TERM; echo ready; while :; do sleep 0.1; done')
    _wait_for_log(docker, name, "ready")
    start = time.monotonic()
    docker("stop", "-t", "30", name).check()
    elapsed = time.monotonic() - start
    state = docker.inspect(name)["State"]
    assert state["ExitCode"] == 0, state
    assert elapsed < 10, f"docker stop took {elapsed:.1f}s: SIGTERM did not reach the process"


def _wait_for_log(docker: DockerCli, name: str, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        r = docker("logs", name)
        if re.search(re.escape(text), r.stdout):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never appeared in the logs of {name}:\n{r}")
        time.sleep(0.1)
