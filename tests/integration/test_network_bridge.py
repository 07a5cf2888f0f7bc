"""Bridge networking over real kernel objects, all inside network namespaces the tests make.

A fresh namespace plays the host (bridges, the nftables table, forwarding); further namespaces
play containers (veths into them) and another machine (a veth to the "host"). Traffic is TCP
and UDP between those namespaces only: nothing is sent from, or changed in, the machine's own
namespace, and every namespace, link and process is removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from dockyard.errors import InvalidArgument, NotFound, SystemFailure
from dockyard.network import netlink
from dockyard.network.firewall import BridgeRule, Firewall, PortRule
from dockyard.network.ipam import mac_for
from netns_helpers import is_mount_point, named_netns

pytestmark = [pytest.mark.root]

# A server for a namespace: answers every TCP connection (and UDP datagram) on PORT with
# "<port> <peer address>", so a client sees where it landed and whom the server saw.
SERVER = r"""
import select, socket, sys
port = int(sys.argv[1])
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("0.0.0.0", port)); tcp.listen(16)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", port))
print("ready", flush=True)
while True:
    for s in select.select([tcp, udp], [], [])[0]:
        if s is tcp:
            conn, peer = tcp.accept()
            conn.sendall(f"{port} {peer[0]}".encode()); conn.close()
        else:
            data, peer = udp.recvfrom(100)
            udp.sendto(f"{port} {peer[0]}".encode(), peer)
"""

# A client: one TCP connection or UDP exchange; prints the answer or the error's name.
CLIENT = r"""
import socket, sys
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    if proto == "tcp":
        s = socket.create_connection((host, port), timeout=1.5)
        print(s.recv(100).decode())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)
        s.sendto(b"?", (host, port)); print(s.recv(100).decode())
except OSError as exc:
    print("error", type(exc).__name__)
"""


def in_ns(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={ns}", "--", *argv], capture_output=True, text=True, check=check,
                          timeout=30)


def ask(ns: str, host: str, port: int, proto: str = "tcp") -> str:
    """What a client in `ns` gets from host:port ("<port> <peer>" or "error <name>")."""
    return in_ns(ns, sys.executable, "-I", "-c", CLIENT, host, str(port), proto).stdout.strip()


@contextlib.contextmanager
def server(ns: str, port: int) -> Iterator[None]:
    proc = subprocess.Popen(["nsenter", f"--net={ns}", "--", sys.executable, "-I", "-c", SERVER, str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass
class Host:
    """The "host" namespace, its containers and the other machine."""

    ns: str
    remote: str                      # another machine, 10.77.0.2, reached through ext0 (10.77.0.1)
    containers: dict[str, str]       # name -> namespace path
    addresses: dict[str, str]        # name -> address


HOST_ADDRESS, REMOTE_ADDRESS = "10.77.0.1", "10.77.0.2"
NETWORKS = {"dyt-a": ("10.88.0.1/24", "10.88.0.0/24"), "dyt-b": ("10.89.0.1/24", "10.89.0.0/24")}
PLAN = {"c1": ("dyt-a", "10.88.0.2"), "c2": ("dyt-a", "10.88.0.3"), "c3": ("dyt-b", "10.89.0.2")}


@pytest.fixture
def make_ns() -> Iterator[Callable[[], str]]:
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(named_netns())


@pytest.fixture
def host(make_ns: Callable[[], str]) -> Host:
    """Two bridges in a host namespace, c1 and c2 on dyt-a, c3 on dyt-b, and a remote machine
    on a veth that is the host's "external" interface."""
    h, remote = make_ns(), make_ns()
    for bridge, (gateway, _) in NETWORKS.items():
        netlink.ensure_bridge(bridge, gateway, netns=h)
    containers, addresses = {}, {}
    for name, (bridge, address) in PLAN.items():
        ns = make_ns()
        netlink.create_veth_into(f"veth-{name}", f"tmp-{name}", ns, bridge, address_cidr=f"{address}/24",
                                 gateway=NETWORKS[bridge][0].partition("/")[0], mac=mac_for(address), netns=h)
        containers[name], addresses[name] = ns, address
    in_ns(h, "ip", "link", "add", "ext0", "type", "veth", "peer", "name", "ext0p")
    in_ns(h, "ip", "link", "set", "ext0p", "netns", remote)
    in_ns(h, "ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", "ext0")
    in_ns(h, "ip", "link", "set", "ext0", "up")
    in_ns(remote, "ip", "link", "set", "ext0p", "name", "eth0")
    in_ns(remote, "ip", "addr", "add", f"{REMOTE_ADDRESS}/24", "dev", "eth0")
    in_ns(remote, "ip", "link", "set", "eth0", "up")
    return Host(h, remote, containers, addresses)


def firewall_model() -> list[BridgeRule]:
    return [BridgeRule(bridge, subnet) for bridge, (_, subnet) in NETWORKS.items()]


# --- netlink -------------------------------------------------------------------------------


def test_bridge_is_made_once_and_found_again(make_ns: Callable[[], str]) -> None:
    h = make_ns()
    # a new namespace may inherit forwarding from the machine's: turn it off there first
    in_ns(h, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward")
    assert netlink.read_sysctl("net/ipv4/ip_forward", h) == "0"
    netlink.ensure_bridge("dyt-br", "10.50.0.1/16", mtu=1400, netns=h)
    netlink.ensure_bridge("dyt-br", "10.50.0.1/16", mtu=1400, netns=h)   # a restart finds it
    links = netlink.list_links_in(h)
    assert links["dyt-br"]["kind"] == "bridge" and links["dyt-br"]["up"] and links["dyt-br"]["mtu"] == 1400
    assert [a.cidr for a in netlink.list_addresses_in(h) if a.ifname == "dyt-br" and a.family == 4] == ["10.50.0.1/16"]
    assert netlink.read_sysctl("net/ipv4/ip_forward", h) == "1"
    assert netlink.routed_subnets(netns=h) == ["10.50.0.0/16"]
    assert netlink.routed_subnets({"dyt-br"}, netns=h) == []
    in_ns(h, "ip", "link", "add", "dyt-dummy", "type", "veth", "peer", "name", "dyt-dummy2")
    with pytest.raises(SystemFailure, match="not a bridge"):
        netlink.ensure_bridge("dyt-dummy", "10.51.0.1/16", netns=h)
    with pytest.raises(InvalidArgument):
        netlink.ensure_bridge("dyt-x", "10.51.0.1", netns=h)
    assert netlink.delete_link("dyt-br", netns=h) is True
    assert netlink.delete_link("dyt-br", netns=h) is False
    assert "dyt-br" not in netlink.list_links_in(h)


def test_the_machines_namespace_is_untouched_by_netns_calls(make_ns: Callable[[], str]) -> None:
    before = set(os.listdir("/sys/class/net"))
    h = make_ns()
    netlink.ensure_bridge("dyt-br", "10.50.0.1/16", netns=h)
    assert set(os.listdir("/sys/class/net")) == before
    assert "dyt-br" in netlink.list_links_in(h)


def test_veth_into_a_container(make_ns: Callable[[], str]) -> None:
    h, c = make_ns(), make_ns()
    netlink.ensure_bridge("dyt-br", "10.60.0.1/24", netns=h)
    netlink.create_veth_into("veth-c", "tmp-c", c, "dyt-br", address_cidr="10.60.0.5/24", gateway="10.60.0.1",
                             mac=mac_for("10.60.0.5"), netns=h)
    inside = netlink.list_links_in(c)
    assert set(inside) == {"lo", "eth0"}
    assert inside["eth0"]["up"] and inside["lo"]["up"] and inside["eth0"]["mac"] == "02:42:0a:3c:00:05"
    assert [(a.ifname, a.cidr) for a in netlink.list_addresses_in(c) if a.family == 4] == \
        [("eth0", "10.60.0.5/24"), ("lo", "127.0.0.1/8")]
    assert netlink.default_gateway_in(c) == "10.60.0.1"
    outside = netlink.list_links_in(h)
    assert outside["veth-c"]["master"] == "dyt-br" and outside["veth-c"]["up"]
    netlink.add_address_in(c, "eth0", "fd00:60::5/64")
    assert any(a.cidr == "fd00:60::5/64" for a in netlink.list_addresses_in(c))
    # a second interface of the same name is refused, and nothing is left of the attempt
    with pytest.raises(SystemFailure, match="already has an interface eth0"):
        netlink.create_veth_into("veth-d", "tmp-d", c, "dyt-br", address_cidr="10.60.0.6/24", gateway=None, netns=h)
    assert "veth-d" not in netlink.list_links_in(h) and "tmp-d" not in netlink.list_links_in(c)
    assert netlink.remove_interface_in(c, "eth0") is True
    assert "veth-c" not in netlink.list_links_in(h)      # the host end went with it
    assert netlink.remove_interface_in(c, "eth0") is False


def test_veth_failures_leave_nothing(make_ns: Callable[[], str], tmp_path: object) -> None:
    h = make_ns()
    with pytest.raises(NotFound, match="bridge dyt-none"):
        netlink.create_veth_into("veth-x", "tmp-x", h, "dyt-none", address_cidr="10.0.0.2/24", gateway=None, netns=h)
    netlink.ensure_bridge("dyt-br", "10.61.0.1/24", netns=h)
    with pytest.raises(SystemFailure, match="cannot open network namespace"):
        netlink.create_veth_into("veth-x", "tmp-x", f"{tmp_path}/nothing", "dyt-br", address_cidr="10.61.0.2/24",
                                 gateway=None, netns=h)
    assert set(netlink.list_links_in(h)) == {"lo", "dyt-br"}


def test_named_netns_without_the_ip_tool(tmp_path: object, make_ns: Callable[[], str]) -> None:
    directory = f"{tmp_path}/netns"
    with netlink.NetnsHandle.create(directory, "box") as handle:
        assert handle.path == f"{directory}/box"
        assert is_mount_point(handle.path)
        mine = os.stat("/proc/self/ns/net").st_ino
        assert os.stat(handle.path).st_ino != mine
        assert set(netlink.list_links_in(handle.path)) == {"lo"}
        assert netlink.list_links_in(handle.path)["lo"]["up"]
        with pytest.raises(SystemFailure, match="exists already"):
            netlink.create_named_netns(directory, "box")
        h = make_ns()
        netlink.ensure_bridge("dyt-br", "10.62.0.1/24", netns=h)
        netlink.create_veth_into("veth-b", "tmp-b", handle.path, "dyt-br", address_cidr="10.62.0.2/24",
                                 gateway="10.62.0.1", netns=h)
        assert netlink.default_gateway_in(handle.path) == "10.62.0.1"
    assert not os.path.exists(f"{directory}/box") and not is_mount_point(f"{directory}/box")
    netlink.remove_named_netns(f"{directory}/box")   # gone already: nothing happens
    with pytest.raises(InvalidArgument):
        netlink.create_named_netns(directory, "../escape")


# --- traffic through the bridges ------------------------------------------------------------


def test_containers_on_one_bridge_talk(host: Host) -> None:
    c1, c2 = host.containers["c1"], host.containers["c2"]
    with server(c2, 80):
        assert ask(c1, "10.88.0.3", 80) == "80 10.88.0.2"
        assert ask(c1, "10.88.0.3", 80, "udp") == "80 10.88.0.2"
    with server(c1, 80):
        assert ask(c2, "10.88.0.2", 80) == "80 10.88.0.3"
        assert ask(host.ns, "10.88.0.2", 80) == "80 10.88.0.1"   # the host reaches them on the bridge


def test_isolation_between_bridges(host: Host) -> None:
    c1, c2, c3 = (host.containers[n] for n in ("c1", "c2", "c3"))
    fw = Firewall(host.ns)
    with server(c3, 80), server(c2, 80):
        assert ask(c1, "10.89.0.2", 80) == "80 10.88.0.2"       # routed by the host: no rules yet
        fw.sync(firewall_model(), [])
        assert ask(c1, "10.89.0.2", 80) == "error TimeoutError"  # dropped between bridges
        assert ask(c1, "10.89.0.2", 80, "udp") == "error TimeoutError"
        assert ask(c3, "10.88.0.3", 80) == "error TimeoutError"
        assert ask(c1, "10.88.0.3", 80) == "80 10.88.0.2"       # within a bridge: allowed
        assert ask(host.ns, "10.89.0.2", 80) == "80 10.89.0.1"  # the host itself: allowed
        fw.clear()
        assert ask(c1, "10.89.0.2", 80) == "80 10.88.0.2"


def test_internal_network_stays_inside(host: Host) -> None:
    c1, c2, c3 = (host.containers[n] for n in ("c1", "c2", "c3"))
    Firewall(host.ns).sync([BridgeRule("dyt-a", "10.88.0.0/24", internal=True), BridgeRule("dyt-b", "10.89.0.0/24")], [])
    with server(host.remote, 9000), server(c2, 80), server(c1, 81):
        assert ask(c1, REMOTE_ADDRESS, 9000) == "error TimeoutError"
        assert ask(c1, "10.88.0.3", 80) == "80 10.88.0.2"
        assert ask(c3, "10.88.0.2", 81) == "error TimeoutError"
        assert ask(c3, REMOTE_ADDRESS, 9000) == f"9000 {HOST_ADDRESS}"


def test_outbound_traffic_is_masqueraded(host: Host) -> None:
    c1 = host.containers["c1"]
    with server(host.remote, 9000):
        # the remote machine has no route back to 10.88.0.0/24: without NAT there is no answer
        assert ask(c1, REMOTE_ADDRESS, 9000) == "error TimeoutError"
        Firewall(host.ns).sync(firewall_model(), [])
        assert ask(c1, REMOTE_ADDRESS, 9000) == f"9000 {HOST_ADDRESS}"
        assert ask(c1, REMOTE_ADDRESS, 9000, "udp") == f"9000 {HOST_ADDRESS}"


def test_published_ports(host: Host) -> None:
    c1, c2, c3 = (host.containers[n] for n in ("c1", "c2", "c3"))
    fw = Firewall(host.ns)
    ports = [PortRule("tcp", "", 8080, "10.88.0.2", 80), PortRule("udp", "", 8053, "10.88.0.2", 80),
             PortRule("tcp", HOST_ADDRESS, 8081, "10.89.0.2", 80), PortRule("tcp", "10.88.0.1", 8082, "10.89.0.2", 80)]
    with server(c1, 80), server(c3, 80):
        assert ask(host.remote, HOST_ADDRESS, 8080) == "error ConnectionRefusedError"
        fw.sync(firewall_model(), ports)
        # from another machine: the container sees the real client
        assert ask(host.remote, HOST_ADDRESS, 8080) == f"80 {REMOTE_ADDRESS}"
        assert ask(host.remote, HOST_ADDRESS, 8053, "udp") == f"80 {REMOTE_ADDRESS}"
        assert ask(host.remote, HOST_ADDRESS, 8081) == f"80 {REMOTE_ADDRESS}"
        # a host address given: only that address
        assert ask(host.remote, HOST_ADDRESS, 8082) == "error ConnectionRefusedError"
        # from the host itself, to its non-loopback addresses (the output chain)
        assert ask(host.ns, HOST_ADDRESS, 8080) == f"80 {HOST_ADDRESS}"
        assert ask(host.ns, "10.88.0.1", 8080) == "80 10.88.0.1"
        assert ask(host.ns, "10.88.0.1", 8082) == "80 10.89.0.1"
        # hairpin: a container reaching a neighbour's published port through a host address
        # (masqueraded, so that the answer comes back through the host). A container reaching its
        # own published port this way is not routed by the kernel (source = destination after
        # DNAT); the userland proxy serves that case.
        assert ask(c2, HOST_ADDRESS, 8080) == "80 10.88.0.1"
        assert ask(c2, "10.88.0.1", 8080) == "80 10.88.0.1"
        # published ports follow the model: removed from it, gone
        fw.sync(firewall_model(), ports[2:])
        assert ask(host.remote, HOST_ADDRESS, 8080) == "error ConnectionRefusedError"
        assert ask(host.remote, HOST_ADDRESS, 8081) == f"80 {REMOTE_ADDRESS}"
        fw.clear()
        assert ask(host.remote, HOST_ADDRESS, 8081) == "error ConnectionRefusedError"


# --- the table itself -----------------------------------------------------------------------


def test_sync_replaces_only_our_table(make_ns: Callable[[], str]) -> None:
    h = make_ns()
    in_ns(h, "nft", "add table inet other; add chain inet other c { type filter hook input priority 0; }; "
          "add rule inet other c tcp dport 1 accept")
    fw = Firewall(h)
    assert not fw.exists()
    model = firewall_model(), [PortRule("tcp", "", 8080, "10.88.0.2", 80)]
    fw.sync(*model)
    first = fw.rules()
    fw.sync(*model)
    assert fw.rules() == first                    # replaced, not appended to
    assert len(first["ports"]) == 1 and first["forward"][1][-1] == {"drop": None}
    with pytest.raises(InvalidArgument):
        fw.sync(firewall_model(), [PortRule("icmp", "", 1, "10.88.0.2", 1)])
    with pytest.raises(InvalidArgument):
        fw.sync([BridgeRule('x" drop', "10.0.0.0/8")], [])
    assert fw.rules() == first                    # a rejected model changes nothing
    fw.clear()
    fw.clear()
    assert not fw.exists()
    other = json.loads(in_ns(h, "nft", "-j", "list", "table", "inet", "other").stdout)
    assert sum("rule" in item for item in other["nftables"]) == 1


def test_missing_nft_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from dockyard.errors import NotImplementedFeature

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(NotImplementedFeature, match="nft command is not installed"):
        Firewall().sync([], [])


# Run inside a namespace as the daemon would be (nsenter --net=): no `netns` argument anywhere.
AS_DAEMON = r"""
import json, sys
from dockyard.network import netlink
from dockyard.network.firewall import BridgeRule, Firewall
container = sys.argv[1]
netlink.ensure_bridge("dyt-cur", "10.63.0.1/24")
netlink.create_veth_into("veth-cur", "tmp-cur", container, "dyt-cur", address_cidr="10.63.0.2/24", gateway="10.63.0.1")
Firewall().sync([BridgeRule("dyt-cur", "10.63.0.0/24")], [])
print(json.dumps({"links": sorted(netlink.list_links_in(None)), "fw": sorted(Firewall().rules()),
                  "inside": [(a.ifname, a.cidr) for a in netlink.list_addresses_in(container) if a.family == 4],
                  "mac": netlink.list_links_in(container)["eth0"]["mac"]}))
"""


def test_current_namespace_mode_as_the_daemon_uses_it(make_ns: Callable[[], str]) -> None:
    h, c = make_ns(), make_ns()
    out = json.loads(in_ns(h, sys.executable, "-c", AS_DAEMON, c).stdout)
    assert out["links"] == ["dyt-cur", "lo", "veth-cur"]
    assert out["fw"] == ["forward", "output", "ports", "postrouting", "prerouting"]
    assert out["inside"] == [["eth0", "10.63.0.2/24"], ["lo", "127.0.0.1/8"]]
    assert out["mac"] == "02:42:0a:3f:00:02"                 # derived by default
    assert netlink.read_sysctl("net/ipv4/ip_forward", h) == "1"


def test_ipv6_only_veth(make_ns: Callable[[], str]) -> None:
    h, c = make_ns(), make_ns()
    netlink.ensure_bridge("dyt-br6", "fd00:61::1/64", netns=h)
    netlink.create_veth_into("veth-6", "tmp-6", c, "dyt-br6", address_cidr="fd00:61::2/64", gateway="fd00:61::1",
                             netns=h)
    assert any(a.cidr == "fd00:61::2/64" and a.ifname == "eth0" for a in netlink.list_addresses_in(c))
    routes = in_ns(c, "ip", "-6", "route", "show", "default").stdout
    assert "via fd00:61::1 dev eth0" in routes
