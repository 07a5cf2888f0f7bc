"""Docker-compatible address management (dockyard.network.ipam), no I/O."""

from __future__ import annotations

import json

import pytest

from dockyard.errors import AlreadyExists, InvalidArgument, NotFound, WrongState
from dockyard.network.ipam import DEFAULT_BRIDGE_GATEWAY, DEFAULT_BRIDGE_SUBNET, Ipam, Pool, default_pools, mac_for, pick_subnet


def test_default_pools_are_dockers() -> None:
    pools = [str(p) for p in default_pools()]
    assert pools[:2] == ["172.17.0.0/16", "172.18.0.0/16"]
    assert pools[14] == "172.31.0.0/16"
    assert pools[15:17] == ["192.168.0.0/20", "192.168.16.0/20"]
    assert pools[-1] == "192.168.240.0/20"
    assert len(pools) == 15 + 16


def test_default_bridge_gets_172_17() -> None:
    ipam = Ipam()
    net = ipam.add_default_bridge()
    assert str(net.v4.subnet) == DEFAULT_BRIDGE_SUBNET
    assert str(net.v4.gateway) == DEFAULT_BRIDGE_GATEWAY
    assert net.v4.gateway_cidr == "172.17.0.1/16"
    assert ipam.allocate("bridge") == "172.17.0.2"
    assert ipam.allocate("bridge") == "172.17.0.3"


def test_user_networks_take_the_next_free_pools() -> None:
    ipam = Ipam()
    ipam.add_default_bridge()
    assert str(ipam.add_network("a").v4.subnet) == "172.18.0.0/16"
    assert str(ipam.add_network("b").v4.subnet) == "172.19.0.0/16"
    ipam.remove_network("a")
    assert str(ipam.add_network("c").v4.subnet) == "172.18.0.0/16"


def test_host_routes_are_skipped() -> None:
    ipam = Ipam()
    net = ipam.add_default_bridge(in_use=["172.17.5.0/24", "172.18.0.0/15"])
    assert str(net.v4.subnet) == "172.20.0.0/16"
    assert str(net.v4.gateway) == "172.20.0.1"


def test_pools_run_into_192_168_then_out() -> None:
    assert str(pick_subnet(["172.16.0.0/12"])) == "192.168.0.0/20"
    assert str(pick_subnet(["172.16.0.0/12", "192.168.0.0/20", "192.168.20.0/24"])) == "192.168.32.0/20"
    with pytest.raises(WrongState, match="non-overlapping IPv4 address pool"):
        pick_subnet(["172.16.0.0/12", "192.168.0.0/16"])
    ipam = Ipam()
    for n in range(31):
        ipam.add_network(f"n{n}")
    assert str(ipam.get("n30").v4.subnet) == "192.168.240.0/20"
    with pytest.raises(WrongState):
        ipam.add_network("one-too-many")


def test_explicit_subnet_gateway_and_overlap() -> None:
    ipam = Ipam()
    net = ipam.add_network("a", subnet="10.5.0.0/24", gateway="10.5.0.254")
    assert str(net.v4.gateway) == "10.5.0.254"
    assert ipam.allocate("a") == "10.5.0.1"
    with pytest.raises(AlreadyExists, match="overlaps"):
        ipam.add_network("b", subnet="10.5.0.128/25")
    with pytest.raises(AlreadyExists, match="overlaps"):
        ipam.add_network("b", subnet="10.0.0.0/8")
    # host routes do not stop an explicit subnet (Docker checks only its own networks)
    assert str(ipam.add_network("c", subnet="172.17.0.0/16", in_use=["172.17.0.0/16"]).v4.subnet) == "172.17.0.0/16"
    # an automatic one skips the explicit ones
    assert str(ipam.add_network("d").v4.subnet) == "172.18.0.0/16"
    with pytest.raises(AlreadyExists):
        ipam.add_network("a")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"subnet": "10.0.0.0"}, "CIDR"),
    ({"subnet": "10.0.0.300/24"}, "invalid subnet"),
    ({"subnet": "banana/8"}, "invalid subnet"),
    ({"subnet": "10.0.0.0/33"}, "invalid subnet"),
    ({"subnet": "10.0.0.0/31"}, "too small"),
    ({"subnet": "fd00::/64"}, "not IPv4"),
    ({"subnet": "10.0.0.0/24", "gateway": "10.0.1.1"}, "not in subnet"),
    ({"subnet": "10.0.0.0/24", "gateway": "10.0.0.0"}, "network or broadcast"),
    ({"subnet": "10.0.0.0/24", "gateway": "nope"}, "invalid gateway"),
    ({"subnet": "10.0.0.0/24", "ip_range": "10.0.1.0/25"}, "not in subnet"),
    ({"gateway": "10.0.0.1"}, "needs a subnet"),
    ({"ip_range": "10.0.0.0/25"}, "needs a subnet"),
    ({"subnet": "10.0.0.0/24", "subnet6": "10.1.0.0/24"}, "not IPv6"),
    ({"subnet": "10.0.0.0/24", "gateway6": "fd00::1"}, "needs an IPv6 subnet"),
])
def test_bad_input_is_invalid_argument(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Ipam().add_network("x", **kwargs)  # type: ignore[arg-type]


def test_host_bits_are_cleared() -> None:
    assert str(Ipam().add_network("x", subnet="10.1.2.3/16").v4.subnet) == "10.1.0.0/16"


def test_ip_range_limits_automatic_addresses() -> None:
    ipam = Ipam()
    ipam.add_network("r", subnet="10.9.0.0/16", ip_range="10.9.5.0/30")
    got = [ipam.allocate("r") for _ in range(4)]
    # Docker hands out every address of the range that is not the subnet's network/broadcast/gateway
    assert got == ["10.9.5.0", "10.9.5.1", "10.9.5.2", "10.9.5.3"]
    with pytest.raises(WrongState, match="no available"):
        ipam.allocate("r")
    # --ip may still name any free address of the subnet
    assert ipam.allocate("r", "10.9.200.7") == "10.9.200.7"


def test_requested_addresses() -> None:
    ipam = Ipam()
    ipam.add_network("n", subnet="10.7.0.0/24", aux_addresses={"router": "10.7.0.9"})
    assert ipam.allocate("n", "10.7.0.50") == "10.7.0.50"
    with pytest.raises(AlreadyExists, match="in use"):
        ipam.allocate("n", "10.7.0.50")
    for reserved in ("10.7.0.1", "10.7.0.0", "10.7.0.255", "10.7.0.9"):
        with pytest.raises(AlreadyExists, match="in use"):
            ipam.allocate("n", reserved)
    with pytest.raises(InvalidArgument, match="contain the IP address"):
        ipam.allocate("n", "10.8.0.5")
    with pytest.raises(InvalidArgument, match="invalid IP address"):
        ipam.allocate("n", "10.7.0.x")
    # automatic allocation skips the gateway, aux addresses and requested ones
    assert [ipam.allocate("n") for _ in range(8)] == [f"10.7.0.{i}" for i in (2, 3, 4, 5, 6, 7, 8, 10)]
    with pytest.raises(NotFound):
        ipam.allocate("missing")


def test_serial_allocation_and_release() -> None:
    ipam = Ipam()
    ipam.add_network("s", subnet="10.3.0.0/29")   # hosts .1-.6, gateway .1
    assert [ipam.allocate("s") for _ in range(3)] == ["10.3.0.2", "10.3.0.3", "10.3.0.4"]
    ipam.release("s", "10.3.0.2")
    assert ipam.allocate("s") == "10.3.0.5"         # not the one just released
    assert ipam.allocate("s") == "10.3.0.6"
    assert ipam.allocate("s") == "10.3.0.2"         # wraps round to the free ones
    with pytest.raises(WrongState, match="no available"):
        ipam.allocate("s")
    ipam.release("s", "10.3.0.4")
    ipam.release("s", "10.3.0.4")                   # releasing twice is harmless
    ipam.release("gone", "10.3.0.4")
    assert ipam.allocate("s") == "10.3.0.4"


def test_state_survives_a_restart() -> None:
    ipam = Ipam()
    ipam.add_default_bridge()
    ipam.add_network("u", subnet="10.4.0.0/24", gateway="10.4.0.1", ip_range="10.4.0.128/25",
                     aux_addresses={"a": "10.4.0.5"}, subnet6="fd00:1::/64")
    ipam.allocate("bridge")
    ipam.allocate("u")
    ipam.allocate("u", "10.4.0.7")
    v6 = ipam.allocate6("u")
    assert v6 == "fd00:1::2"
    text = json.dumps(ipam.to_dict())
    again = Ipam.from_dict(json.loads(text))
    assert again.to_dict() == ipam.to_dict()
    assert again.allocate("bridge") == "172.17.0.3"
    assert again.allocate("u") == "10.4.0.129"
    assert again.allocate6("u") == "fd00:1::3"
    with pytest.raises(AlreadyExists):
        again.allocate("u", "10.4.0.7")
    with pytest.raises(AlreadyExists, match="overlaps"):
        again.add_network("v", subnet="172.17.3.0/24")
    assert str(again.add_network("w").v4.subnet) == "172.18.0.0/16"


def test_reserve_marks_addresses_found_again() -> None:
    ipam = Ipam()
    ipam.add_network("n", subnet="10.6.0.0/24")
    ipam.reserve("n", "10.6.0.2")
    assert ipam.allocate("n") == "10.6.0.3"
    with pytest.raises(InvalidArgument):
        ipam.reserve("n", "10.99.0.2")


def test_ipv6_pool() -> None:
    pool = Pool.create("fd00:dead::/64")
    assert str(pool.gateway) == "fd00:dead::1"
    assert pool.allocate() == "fd00:dead::2"
    assert pool.allocate("fd00:dead::beef") == "fd00:dead::beef"
    with pytest.raises(AlreadyExists):
        pool.allocate("fd00:dead::beef")
    with pytest.raises(InvalidArgument):
        pool.allocate("10.0.0.1")
    with pytest.raises(InvalidArgument, match="too small"):
        Pool.create("fd00::/127")


def test_mac_is_derived_from_the_address() -> None:
    assert mac_for("172.17.0.2") == "02:42:ac:11:00:02"
    assert mac_for("10.255.0.1") == "02:42:0a:ff:00:01"
