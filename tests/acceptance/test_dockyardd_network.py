"""Networking through the real docker CLI, with dockyardd inside a network namespace of the test's.

Nothing leaves that namespace: the daemon, its bridges, nftables table and containers live in
it, and the checks that talk to published ports run in it too (nsenter --net).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_dockyardd_api import needs_containers
from docker_engine import DockerResult, EngineError
from dockyardd import Dockyardd, start_dockyardd, stop_dockyardd

pytestmark = [pytest.mark.root, needs_containers]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def netd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dockyardd, str]]:
    if shutil.which("docker") is None or shutil.which("nft") is None:
        pytest.skip("the docker CLI and nft are needed")
    ns = f"dyt-net-{os.getpid()}"
    _ip("netns", "add", ns)
    try:
        _ip("-n", ns, "link", "set", "lo", "up")
        try:
            d = start_dockyardd(tmp_path_factory.mktemp("netd"), netns=ns)
        except EngineError as e:
            pytest.fail(str(e), pytrace=False)
        try:
            d.docker("pull", "busybox").check()
            yield d, ns
        finally:
            for net in d.docker("network", "ls", "-q", "--filter", "type=custom").stdout.split():
                d.docker("network", "rm", net)
            problems = stop_dockyardd(d)
            shutil.rmtree(d.dir, ignore_errors=True)
            assert not problems, problems
    finally:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def docker(d: Dockyardd, *args: str, timeout: float = 60) -> DockerResult:
    return d.docker(*args, timeout=timeout)


def explain(d: Dockyardd, r: DockerResult) -> str:
    return f"{r}\n--- dockyardd log (tail) ---\n{d.log_tail(40)}"


def in_ns(ns: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", *argv], capture_output=True, text=True,
                          timeout=timeout)


def _wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def probe(url: str) -> list[str]:
    """wget bounded by timeout(1), not as PID 1 (which ignores SIGTERM), and not with wget -T
    (busybox's crashes here): prints rc=N."""
    return ["sh", "-c", f"timeout 3 wget -qO- {url}; echo rc=$?"]


def unreachable(output: str) -> bool:
    """wget failed to connect (1: refused or unreachable) or was stopped by timeout (143)."""
    return output.strip().endswith(("rc=1", "rc=143", "rc=124"))


SERVE = "mkdir -p /www && echo \"hello from $(hostname)\" > /www/index.html && exec httpd -f -p 80 -h /www"


def test_names_aliases_and_isolation(netd: tuple[Dockyardd, str]) -> None:
    d, _ = netd
    tag = os.getpid()
    app, other = f"app{tag}", f"other{tag}"
    srv, cli, stranger = f"srv{tag}", f"cli{tag}", f"stranger{tag}"
    try:
        assert docker(d, "network", "create", app).ok
        assert docker(d, "network", "create", other).ok
        r = docker(d, "run", "-d", "--name", srv, "--hostname", "web1", "--network", app, "--network-alias", "web",
                   "busybox", "sh", "-c", SERVE)
        assert r.ok, explain(d, r)
        for name in (srv, "web"):
            r = docker(d, "run", "--rm", "--network", app, "busybox", "wget", "-qO-", f"http://{name}/index.html")
            assert r.ok and r.stdout == "hello from web1\n", explain(d, r)
        info = d.inspect(srv)
        ip = info["NetworkSettings"]["Networks"][app]["IPAddress"]
        assert ip and info["NetworkSettings"]["Networks"][app]["Aliases"] == ["web"]
        # another network can neither resolve nor reach it
        r = docker(d, "run", "--rm", "--network", other, "busybox", "nslookup", srv)
        assert not r.ok or "can't resolve" in r.stdout + r.stderr
        r = docker(d, "run", "--rm", "--network", other, "busybox", *probe(f"http://{ip}/"))
        assert r.ok and unreachable(r.stdout), explain(d, r)
        # connect joins a running container to a second network
        assert docker(d, "run", "-d", "--name", cli, "--network", other, "busybox", "sleep", "60").ok
        assert docker(d, "network", "connect", app, cli).ok
        r = docker(d, "exec", cli, "wget", "-qO-", f"http://{srv}/index.html")
        assert r.ok and r.stdout == "hello from web1\n", explain(d, r)
        assert docker(d, "network", "disconnect", app, cli).ok
        r = docker(d, "exec", cli, *probe(f"http://{ip}/index.html"))
        assert r.ok and unreachable(r.stdout), explain(d, r)
        net = json.loads(docker(d, "network", "inspect", app).stdout)[0]
        assert list(net["Containers"]) == [info["Id"]] and net["IPAM"]["Config"][0]["Subnet"]
        assert stranger  # unused name kept for symmetry of clean-up
    finally:
        docker(d, "rm", "-f", srv, cli)
        docker(d, "network", "rm", app, other)


def test_published_port_on_daemon_loopback(netd: tuple[Dockyardd, str]) -> None:
    d, ns = netd
    name = f"pub{os.getpid()}"
    try:
        r = docker(d, "run", "-d", "--name", name, "-p", "127.0.0.1:18080:80", "-p", "80", "busybox", "sh", "-c", SERVE)
        assert r.ok, explain(d, r)
        port = docker(d, "port", name, "80")
        assert port.ok and "127.0.0.1:18080" in port.stdout, port
        fetched = _wait_for(lambda: "hello" in in_ns(ns, "wget", "-qO-", "http://127.0.0.1:18080/index.html").stdout)
        assert fetched, (f"{in_ns(ns, 'wget', '-qO-', 'http://127.0.0.1:18080/index.html')}\n"
                         f"{in_ns(ns, 'ss', '-ltn').stdout}\n{json.dumps(d.inspect(name)['NetworkSettings'])}\n"
                         f"{docker(d, 'logs', name)}\n{in_ns(ns, 'ip', '-o', 'addr').stdout}")
        ports = d.inspect(name)["NetworkSettings"]["Ports"]["80/tcp"]
        assert {p["HostIp"] for p in ports} == {"127.0.0.1", "0.0.0.0"}
        ephemeral = next(p["HostPort"] for p in ports if p["HostIp"] == "0.0.0.0")
        out = in_ns(ns, "wget", "-qO-", f"http://127.0.0.1:{ephemeral}/index.html")
        assert "hello" in out.stdout, out
    finally:
        docker(d, "rm", "-f", name)
    # -P publishes the image's (here: the run's) exposed ports on free host ports
    name = f"puball{os.getpid()}"
    try:
        r = docker(d, "run", "-d", "--name", name, "--expose", "80", "-P", "busybox", "sh", "-c", SERVE)
        assert r.ok, explain(d, r)
        port = docker(d, "port", name, "80/tcp")
        assert port.ok and port.stdout.startswith("0.0.0.0:"), port
        host_port = port.stdout.split()[0].rsplit(":", 1)[1]
        assert _wait_for(lambda: "hello" in in_ns(ns, "wget", "-qO-", f"http://127.0.0.1:{host_port}/index.html").stdout)
    finally:
        docker(d, "rm", "-f", name)
    out = in_ns(ns, "timeout", "3", "wget", "-qO-", "http://127.0.0.1:18080/index.html")
    assert out.returncode in (1, 4, 124), out  # the proxy went with the container: refused (GNU wget: 4)


def test_none_host_and_container_modes(netd: tuple[Dockyardd, str]) -> None:
    d, ns = netd
    r = docker(d, "run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net")
    assert r.ok and r.stdout.split() == ["lo"], explain(d, r)
    r = docker(d, "run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net")
    host_links = in_ns(ns, "ls", "/sys/class/net")
    assert r.ok and "lo" in r.stdout.split(), explain(d, r)
    assert host_links.returncode == 0
    name = f"shared{os.getpid()}"
    try:
        assert docker(d, "run", "-d", "--name", name, "busybox", "sh", "-c", SERVE).ok
        r = docker(d, "run", "--rm", "--network", f"container:{name}", "busybox", "wget", "-qO-",
                   "http://127.0.0.1/index.html")
        assert r.ok and "hello" in r.stdout, explain(d, r)
    finally:
        docker(d, "rm", "-f", name)


def test_mac_address_from_the_cli_and_from_docker_py(netd: tuple[Dockyardd, str]) -> None:
    d, _ = netd
    r = docker(d, "run", "--rm", "--mac-address", "02:42:ac:11:00:0a", "busybox", "cat", "/sys/class/net/eth0/address")
    assert r.ok and r.stdout.strip() == "02:42:ac:11:00:0a", explain(d, r)
    client = d.client()
    box = None
    try:  # docker-py sends Config.MacAddress (the pre-1.44 place)
        box = client.containers.run("busybox", ["sleep", "30"], detach=True, mac_address="02:42:ac:11:00:0b")
        assert client.api.inspect_container(box.id)["NetworkSettings"]["MacAddress"] == "02:42:ac:11:00:0b"
        assert box.exec_run("cat /sys/class/net/eth0/address").output == b"02:42:ac:11:00:0b\n"
    finally:
        if box is not None:
            box.remove(force=True)
        client.close()
    r = docker(d, "run", "--rm", "--network", "none", "--mac-address", "02:42:ac:11:00:0c", "busybox", "true")
    assert not r.ok and "mac-address" in r.stderr, explain(d, r)


def test_legacy_links(netd: tuple[Dockyardd, str]) -> None:
    """--link on the default bridge (environment, /etc/hosts), as a DNS alias on a user-defined
    network (for the linking container only), `docker rm --link`, and a stopped target refused
    at start (not at create, as in dockerd)."""
    d, _ = netd
    tag = os.getpid()
    target, net, web = f"linkdb{tag}", f"linknet{tag}", f"linkweb{tag}"
    try:
        assert docker(d, "run", "-d", "--name", target, "-e", "SECRET=s3", "--expose", "5432", "busybox",
                      "sleep", "60").ok
        ip = docker(d, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", target).stdout.strip()
        r = docker(d, "run", "--rm", "--link", f"{target}:db", "busybox", "sh", "-c",
                   "env | grep ^DB_ | sort; grep -w db /etc/hosts; ping -c1 -W2 db >/dev/null && echo reached")
        assert r.ok, explain(d, r)
        out = r.stdout.splitlines()
        for line in ("DB_ENV_SECRET=s3", f"DB_PORT=tcp://{ip}:5432", f"DB_PORT_5432_TCP_ADDR={ip}", "reached"):
            assert line in out, (line, out)
        assert any(x.startswith("DB_NAME=/") and x.endswith("/db") for x in out), out
        assert any(x.split()[:2] == [ip, "db"] and target in x.split() for x in out), out
        assert docker(d, "create", "--name", web, "--link", target, "busybox", "true").ok
        links = docker(d, "inspect", "--format", "{{json .HostConfig.Links}}", web).stdout.strip()
        assert links == f'["/{target}:/{web}/{target}"]', links
        assert docker(d, "rm", "--link", f"{web}/{target}").ok
        assert docker(d, "inspect", "--format", "{{json .HostConfig.Links}}", web).stdout.strip() in ("[]", "null")
        assert docker(d, "rm", web).ok
        assert docker(d, "network", "create", net).ok
        assert docker(d, "network", "connect", net, target).ok
        r = docker(d, "run", "--rm", "--network", net, "--link", f"{target}:upstream", "busybox", "nslookup", "upstream")
        assert r.ok and "Address" in r.stdout, explain(d, r)
        r = docker(d, "run", "--rm", "--network", net, "busybox", "nslookup", "upstream")
        assert not r.ok, explain(d, r)  # the alias belongs to the linking container alone
        assert docker(d, "stop", "-t", "0", target).ok
        r = docker(d, "run", "--rm", "--name", f"{web}rm", "--link", f"{target}:db", "busybox", "true")
        assert r.returncode == 125 and "Cannot link to a non running container" in r.stderr, explain(d, r)
        r = docker(d, "ps", "-a", "--format", "{{.Names}}")
        assert f"{web}rm" not in r.stdout.split(), r.stdout  # --rm removes it when the start fails
        # as in dockerd, links are resolved at start: created while the target is stopped, the
        # container starts once the target runs again, with its address then
        assert docker(d, "create", "--name", web, "--link", f"{target}:db", "busybox", "env").ok
        r = docker(d, "start", web)
        assert not r.ok and "Cannot link to a non running container" in r.stderr, explain(d, r)
        r = docker(d, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", web)
        assert r.stdout.split() == ["created", "128"], explain(d, r)
        assert docker(d, "start", target).ok
        ip = docker(d, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", target).stdout.strip()
        r = docker(d, "start", "-a", web)
        assert r.ok and {f"DB_PORT_5432_TCP_ADDR={ip}", f"DB_NAME=/{web}/db"} <= set(r.stdout.split()), explain(d, r)
        r = docker(d, "create", "--link", "no-such-target:db", "busybox", "true")
        assert not r.ok and "could not get container for no-such-target: No such container" in r.stderr, explain(d, r)
    finally:
        docker(d, "rm", "-f", web, target)
        docker(d, "network", "rm", net)


def test_ipv6_network(netd: tuple[Dockyardd, str]) -> None:
    """--ipv6 with an IPv6 subnet: containers get addresses from it (and a chosen one with
    --ip6), the IPv6 default route, AAAA answers by name, and inspect shows it all."""
    d, ns = netd
    tag = os.getpid()
    net, server = f"v6net{tag}", f"v6srv{tag}"
    try:
        r = docker(d, "network", "create", "--ipv6", "--subnet", "fd00:dead:beef::/64", net)
        assert r.ok, explain(d, r)
        info = json.loads(docker(d, "network", "inspect", net).stdout)[0]
        assert info["EnableIPv6"] is True
        assert [c["Subnet"] for c in info["IPAM"]["Config"]][1:] == ["fd00:dead:beef::/64"], info["IPAM"]
        assert docker(d, "run", "-d", "--name", server, "--network", net, "--ip6", "fd00:dead:beef::100", "busybox",
                      "sleep", "60").ok
        ep = json.loads(docker(d, "inspect", server).stdout)[0]["NetworkSettings"]["Networks"][net]
        assert ep["GlobalIPv6Address"] == "fd00:dead:beef::100" and ep["GlobalIPv6PrefixLen"] == 64, ep
        assert ep["IPv6Gateway"] == "fd00:dead:beef::1" and ep["IPAddress"], ep
        r = docker(d, "run", "--rm", "--network", net, "busybox", "sh", "-c",
                   f"ip -6 addr show eth0 | grep -c 'inet6 fd00:dead:beef::'; ip -6 route | grep -c default; "
                   f"nslookup -type=AAAA {server} 127.0.0.11 | grep -c fd00:dead:beef::100; "
                   f"ping -6 -c1 -W2 {server} >/dev/null && echo reached")
        assert r.ok and r.stdout.split() == ["1", "1", "1", "reached"], explain(d, r)
        assert in_ns(ns, "ip", "-6", "addr", "show", "dev", info["Options"].get("com.docker.network.bridge.name")
                     or f"dy-{info['Id'][:12]}").stdout.count("fd00:dead:beef::1/64") == 1
    finally:
        docker(d, "rm", "-f", server)
        docker(d, "network", "rm", net)
    r = docker(d, "network", "create", "--ipv6", f"{net}-nosubnet")
    assert not r.ok and "IPv6 subnet" in r.stderr, explain(d, r)


def test_default_bridge_and_cleanup(netd: tuple[Dockyardd, str]) -> None:
    d, ns = netd
    r = docker(d, "run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0")
    assert r.ok and "172." in r.stdout, explain(d, r)
    net = json.loads(docker(d, "network", "inspect", "bridge").stdout)[0]
    assert net["Driver"] == "bridge" and net["IPAM"]["Config"][0]["Subnet"]
    name = f"gone{os.getpid()}"
    assert docker(d, "network", "create", name).ok
    net_id = json.loads(docker(d, "network", "inspect", name).stdout)[0]["Id"]
    bridge = f"dy-{net_id[:12]}"
    r = docker(d, "run", "--rm", "--network", name, "busybox", "true")
    assert r.ok, explain(d, r)
    links = in_ns(ns, "ip", "-o", "link").stdout
    assert bridge in links and "veth" not in links  # the container's veth went with it
    assert docker(d, "network", "rm", name).ok
    assert bridge not in in_ns(ns, "ip", "-o", "link").stdout
    r = docker(d, "network", "rm", "bridge")
    assert not r.ok and "pre-defined" in r.stderr


def test_restart_finds_everything_again(tmp_path: Path) -> None:
    """kill -9 of the daemon and a restart: the bridge, the table and the published port are
    found again (not duplicated) and name resolution works again (its own daemon and netns)."""
    ns = f"dyt-rst-{os.getpid()}"
    _ip("netns", "add", ns)
    d = None
    try:
        _ip("-n", ns, "link", "set", "lo", "up")
        d = start_dockyardd(tmp_path / "d", netns=ns)
        d.docker("pull", "busybox").check()
        assert docker(d, "network", "create", "--ipv6", "--subnet", "fd00:77::/64", "keepnet").ok
        r = docker(d, "run", "-d", "--name", "keeper", "--network", "keepnet", "-p", "127.0.0.1:18081:80",
                   "busybox", "sh", "-c", SERVE)
        assert r.ok, explain(d, r)
        keeper6 = docker(d, "inspect", "--format", "{{.NetworkSettings.Networks.keepnet.GlobalIPv6Address}}",
                         "keeper").stdout.strip()
        assert keeper6.startswith("fd00:77::"), keeper6
        assert _wait_for(lambda: "hello" in in_ns(ns, "wget", "-qO-", "http://127.0.0.1:18081/").stdout)
        before = in_ns(ns, "nft", "list", "table", "ip", "dockyard").stdout
        links_before = sorted(in_ns(ns, "ip", "-o", "link").stdout.split("\n"))
        from dockyardd import kill_daemon, launch

        kill_daemon(d, 9)
        d.process = launch(d.dir, netns=ns).process
        assert _wait_for(lambda: "hello" in in_ns(ns, "wget", "-qO-", "http://127.0.0.1:18081/").stdout)
        after = in_ns(ns, "nft", "list", "table", "ip", "dockyard").stdout
        assert after.count("dnat to") == before.count("dnat to") == 1, after
        assert len(sorted(in_ns(ns, "ip", "-o", "link").stdout.split("\n"))) == len(links_before)
        r = docker(d, "run", "--rm", "--network", "keepnet", "busybox", "wget", "-qO-", "http://keeper/")
        assert r.ok and "hello" in r.stdout, explain(d, r)
        r = docker(d, "run", "--rm", "--network", "keepnet", "busybox", "sh", "-c",
                   "ip -6 -o addr show eth0 scope global; ping -6 -c1 -W2 keeper >/dev/null && echo reached")
        assert r.ok and "reached" in r.stdout and f"{keeper6}/" not in r.stdout, explain(d, r)  # taken back
        assert docker(d, "rm", "-f", "keeper").ok
        assert docker(d, "network", "rm", "keepnet").ok
    finally:
        if d is not None:
            problems = stop_dockyardd(d)
            assert not problems, problems
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def test_dockyard_cli_network_commands(netd: tuple[Dockyardd, str]) -> None:
    import sys

    d, _ = netd
    cli = str(Path(sys.executable).parent / "dockyard")
    env = {**os.environ, "DOCKYARD_HOST": f"unix://{d.socket}"}

    def dy(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, *args], capture_output=True, text=True, env=env, timeout=60,
                              stdin=subprocess.DEVNULL)

    net, name = f"cli{os.getpid()}", f"clisrv{os.getpid()}"
    try:
        r = dy("network", "create", "--subnet", "10.89.0.0/24", "--label", "team=x", net)
        assert r.returncode == 0 and len(r.stdout.strip()) == 64, r
        assert net in dy("network", "ls", "--format", "{{.Name}}").stdout.split()
        r = dy("run", "-d", "--name", name, "--network", net, "--network-alias", "api", "--ip", "10.89.0.50",
               "busybox", "sh", "-c", SERVE)
        assert r.returncode == 0, r
        r = dy("run", "--rm", "--network", net, "busybox", "wget", "-qO-", "http://api/index.html")
        assert r.returncode == 0 and "hello" in r.stdout, r
        info = json.loads(dy("network", "inspect", net).stdout)[0]
        assert info["Labels"] == {"team": "x"}
        assert [c["IPv4Address"] for c in info["Containers"].values()] == ["10.89.0.50/24"]
        r = dy("network", "rm", net)
        assert r.returncode != 0 and "active endpoints" in r.stderr, r
    finally:
        dy("rm", "-f", name)
        dy("network", "rm", net)
