"""Docker-compatible address management: dockyard.network.ipam's pools and the daemon's use of
them in dockyard.services.netkernel.Kernel (subnet planning, a pool per network). No I/O: the
host's routes, which the Kernel reads over netlink, are given by each test."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dockyard.errors import AlreadyExists, InvalidArgument, WrongState
from dockyard.network.ipam import DEFAULT_BRIDGE_GATEWAY, DEFAULT_BRIDGE_SUBNET, Pool, default_pools, mac_for, pick_subnet
from dockyard.services.netkernel import Kernel


def _routes(monkeypatch: pytest.MonkeyPatch, routes: list[str]) -> None:
    """The subnets the host routes already, as Kernel.host_routes would read them."""
    monkeypatch.setattr(Kernel, "host_routes", lambda self: list(routes))


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Kernel:
    """A Kernel on a host that routes nothing."""
    _routes(monkeypatch, [])
    return Kernel()


def _network(subnet: str = "", gateway: str = "", ip_range: str = "", aux_addresses: dict[str, str] | None = None,
             subnet6: str = "", gateway6: str = "", ip_range6: str = "", id: str = "n1") -> SimpleNamespace:
    """The fields of a network record that Kernel._pool reads."""
    return SimpleNamespace(id=id, name=f"net-{id}", subnet=subnet, gateway=gateway, ip_range=ip_range,
                           aux_addresses=aux_addresses or {}, subnet6=subnet6, gateway6=gateway6, ip_range6=ip_range6)


# --- Docker's default pools --------------------------------------------------------------


def test_default_pools_are_dockers_in_dockers_order() -> None:
    pools = [str(p) for p in default_pools()]
    assert pools[:2] == ["172.17.0.0/16", "172.18.0.0/16"]
    assert pools[14] == "172.31.0.0/16"
    assert pools[15:17] == ["192.168.0.0/20", "192.168.16.0/20"]
    assert pools[-1] == "192.168.240.0/20"
    assert len(pools) == 15 + 16


def test_pick_subnet_runs_into_192_168_and_then_out() -> None:
    assert str(pick_subnet(["172.16.0.0/12"])) == "192.168.0.0/20"
    assert str(pick_subnet(["172.16.0.0/12", "192.168.0.0/20", "192.168.20.0/24"])) == "192.168.32.0/20"
    with pytest.raises(WrongState, match="non-overlapping IPv4 address pool"):
        pick_subnet(["172.16.0.0/12", "192.168.0.0/16"])


# --- subnet planning (Kernel) ------------------------------------------------------------


def test_the_default_bridge_gets_172_17_and_hands_out_addresses_from_2(kernel: Kernel) -> None:
    subnet, gateway = kernel.default_subnet([])
    assert (subnet, gateway) == (DEFAULT_BRIDGE_SUBNET, DEFAULT_BRIDGE_GATEWAY)
    bridge = _network(subnet, gateway, id="bridge")
    assert kernel.allocate(bridge) == ("172.17.0.2", 16)
    assert kernel.allocate(bridge) == ("172.17.0.3", 16)


def test_user_networks_take_the_next_default_pool_not_in_use(kernel: Kernel) -> None:
    assert kernel.plan_subnet("", "", "", ["172.17.0.0/16"]) == ("172.18.0.0/16", "172.18.0.1", "")
    assert kernel.plan_subnet("", "", "", ["172.17.0.0/16", "172.18.0.0/16"])[0] == "172.19.0.0/16"
    # a removed network's subnet is no longer in use, so the next network gets it again
    assert kernel.plan_subnet("", "", "", ["172.17.0.0/16", "172.19.0.0/16"])[0] == "172.18.0.0/16"
    # empty subnets (networks without one) are ignored
    assert kernel.plan_subnet("", "", "", ["", "172.17.0.0/16"])[0] == "172.18.0.0/16"


def test_default_pools_overlapping_host_routes_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    _routes(monkeypatch, ["172.17.5.0/24", "172.18.0.0/15"])
    kernel = Kernel()
    assert kernel.default_subnet([]) == ("172.20.0.0/16", "172.20.0.1")
    assert kernel.plan_subnet("", "", "", []) == ("172.20.0.0/16", "172.20.0.1", "")


def test_planning_runs_into_192_168_and_fails_when_every_default_pool_is_used(kernel: Kernel) -> None:
    pools = [str(p) for p in default_pools()]
    assert kernel.plan_subnet("", "", "", pools[:-1])[0] == "192.168.240.0/20"
    with pytest.raises(WrongState, match="non-overlapping IPv4 address pool"):
        kernel.plan_subnet("", "", "", pools)


def test_an_explicit_subnet_keeps_its_gateway_and_ip_range(kernel: Kernel) -> None:
    planned = kernel.plan_subnet("10.5.0.0/24", "10.5.0.254", "10.5.0.128/25", [])
    assert planned == ("10.5.0.0/24", "10.5.0.254", "10.5.0.128/25")
    assert kernel.plan_subnet("10.5.0.0/24", "", "", []) == ("10.5.0.0/24", "10.5.0.1", "")
    assert kernel.allocate(_network("10.5.0.0/24", "10.5.0.254")) == ("10.5.0.1", 24)


def test_host_bits_of_an_explicit_subnet_are_cleared(kernel: Kernel) -> None:
    assert kernel.plan_subnet("10.1.2.3/16", "", "", [])[0] == "10.1.0.0/16"


def test_an_explicit_subnet_overlapping_another_network_is_refused(kernel: Kernel) -> None:
    for subnet in ("10.5.0.128/25", "10.0.0.0/8", "10.5.0.0/24"):
        with pytest.raises(AlreadyExists, match="overlaps with other one"):
            kernel.plan_subnet(subnet, "", "", ["10.5.0.0/24"])


def test_host_routes_do_not_stop_an_explicit_subnet(monkeypatch: pytest.MonkeyPatch) -> None:
    # Docker checks an explicit subnet against its own networks only
    _routes(monkeypatch, ["172.17.0.0/16"])
    kernel = Kernel()
    assert kernel.plan_subnet("172.17.0.0/16", "", "", ["10.5.0.0/24"])[0] == "172.17.0.0/16"
    # ... while an automatic one skips both the explicit networks and the routes
    assert kernel.plan_subnet("", "", "", ["172.18.0.0/16"])[0] == "172.19.0.0/16"


def test_aux_addresses_without_a_subnet_are_checked_against_the_picked_pool(kernel: Kernel) -> None:
    assert kernel.plan_subnet("", "", "", [], {"router": "172.17.0.9"})[0] == "172.17.0.0/16"
    with pytest.raises(InvalidArgument, match="not in subnet 172.17.0.0/16"):
        kernel.plan_subnet("", "", "", [], {"router": "10.0.0.9"})


@pytest.mark.parametrize(("subnet", "gateway", "ip_range", "message"), [
    ("", "10.0.0.1", "", "needs a subnet"),
    ("", "", "10.0.0.0/25", "needs a subnet"),
    ("fd00::/64", "", "", "only IPv4 subnets are supported"),
    ("10.0.0.0/31", "", "", "too small"),
])
def test_plan_subnet_refuses_bad_input(kernel: Kernel, subnet: str, gateway: str, ip_range: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        kernel.plan_subnet(subnet, gateway, ip_range, [])


def test_an_ipv6_subnet_is_planned_with_plan_subnet6(kernel: Kernel) -> None:
    assert kernel.plan_subnet6("fd00:1::/64", "", "", []) == ("fd00:1::/64", "fd00:1::1", "")
    assert kernel.plan_subnet6("fd00:2::/64", "fd00:2::ffff", "fd00:2::/80", ["fd00:1::/64"]) == (
        "fd00:2::/64", "fd00:2::ffff", "fd00:2::/80")
    with pytest.raises(AlreadyExists, match="overlaps with other one"):
        kernel.plan_subnet6("fd00:1:0:0:8000::/65", "", "", ["fd00:1::/64"])


@pytest.mark.parametrize(("subnet", "gateway", "message"), [
    ("10.1.0.0/24", "", "is not an IPv6 subnet"),
    ("", "fd00::1", "CIDR"),   # an IPv6 gateway without an IPv6 subnet
    ("fd00::/127", "", "too small"),
])
def test_plan_subnet6_refuses_bad_input(kernel: Kernel, subnet: str, gateway: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        kernel.plan_subnet6(subnet, gateway, "", [])


# --- a network's addresses (Kernel over its pools) ---------------------------------------


def test_the_kernel_builds_a_network_pool_from_its_record(kernel: Kernel) -> None:
    net = _network("10.4.0.0/24", "10.4.0.1", "10.4.0.128/30", {"a": "10.4.0.129"}, subnet6="fd00:1::/64")
    assert kernel.allocate(net) == ("10.4.0.128", 24)
    assert kernel.allocate(net) == ("10.4.0.130", 24)          # the aux address is skipped
    assert kernel.allocate(net, "10.4.0.7") == ("10.4.0.7", 24)  # --ip may lie outside the ip-range
    assert kernel.allocate(net, version=6) == ("fd00:1::2", 64)
    kernel.reserve(net, "fd00:1::3")
    assert kernel.allocate(net, version=6) == ("fd00:1::4", 64)
    kernel.release(net, "10.4.0.128")
    assert kernel.allocate(net) == ("10.4.0.131", 24)
    assert kernel.allocate(net) == ("10.4.0.128", 24)


def test_the_kernel_checks_requested_addresses_against_the_network(kernel: Kernel) -> None:
    net = _network("10.4.0.0/24", subnet6="fd00:1::/64")
    kernel.check_address(net, "10.4.0.50")
    kernel.check_address(net, "fd00:1::50")
    with pytest.raises(InvalidArgument, match="contain the IP address 10.5.0.1"):
        kernel.check_address(net, "10.5.0.1")
    with pytest.raises(InvalidArgument, match="invalid IP address"):
        kernel.check_address(net, "10.4.0.x")


def test_a_network_without_a_subnet_has_no_addresses(kernel: Kernel) -> None:
    with pytest.raises(InvalidArgument, match="network net-n1 has no subnet"):
        kernel.allocate(_network())
    with pytest.raises(InvalidArgument, match="network net-n1 has no IPv6 subnet"):
        kernel.allocate(_network("10.4.0.0/24"), version=6)


def test_releasing_on_a_network_without_a_pool_is_harmless(kernel: Kernel) -> None:
    kernel.release(_network("10.4.0.0/24", id="gone"), "10.4.0.2")
    kernel.release(_network("10.4.0.0/24", id="gone"), "fd00::2")


def test_a_restarted_kernel_given_back_the_running_addresses_does_not_hand_them_out(kernel: Kernel) -> None:
    bridge = _network(DEFAULT_BRIDGE_SUBNET, DEFAULT_BRIDGE_GATEWAY, id="bridge")
    user = _network("10.4.0.0/24", "10.4.0.1", "10.4.0.128/25", {"a": "10.4.0.5"}, subnet6="fd00:1::/64", id="u")
    running = [kernel.allocate(bridge)[0], kernel.allocate(user)[0], kernel.allocate(user, "10.4.0.7")[0],
               kernel.allocate(user, version=6)[0]]
    assert running == ["172.17.0.2", "10.4.0.128", "10.4.0.7", "fd00:1::2"]
    again = Kernel()
    for address in running[:1]:
        again.reserve(bridge, address)
    for address in running[1:]:
        again.reserve(user, address)
    assert again.allocate(bridge)[0] == "172.17.0.3"
    assert again.allocate(user)[0] == "10.4.0.129"
    assert again.allocate(user, version=6)[0] == "fd00:1::3"
    with pytest.raises(AlreadyExists, match="in use"):
        again.allocate(user, "10.4.0.7")


def test_a_restart_forgets_the_serial_cursor(kernel: Kernel) -> None:
    # pools live in memory: after a restart allocation starts again at the range's beginning,
    # so an address released before the restart may be handed out at once
    net = _network("10.3.0.0/29")
    assert [kernel.allocate(net)[0] for _ in range(2)] == ["10.3.0.2", "10.3.0.3"]
    kernel.release(net, "10.3.0.2")
    assert kernel.allocate(net)[0] == "10.3.0.4"
    again = Kernel()
    again.reserve(net, "10.3.0.3")
    again.reserve(net, "10.3.0.4")
    assert again.allocate(net)[0] == "10.3.0.2"


# --- pools -------------------------------------------------------------------------------


@pytest.mark.parametrize(("subnet", "gateway", "ip_range", "aux", "message"), [
    ("10.0.0.0", "", "", {}, "CIDR"),
    ("10.0.0.300/24", "", "", {}, "invalid subnet"),
    ("banana/8", "", "", {}, "invalid subnet"),
    ("10.0.0.0/33", "", "", {}, "invalid subnet"),
    ("10.0.0.0/31", "", "", {}, "too small"),
    ("fd00::/127", "", "", {}, "too small"),
    ("10.0.0.0/24", "10.0.1.1", "", {}, "not in subnet"),
    ("10.0.0.0/24", "fd00::1", "", {}, "not in subnet"),
    ("10.0.0.0/24", "10.0.0.0", "", {}, "network or broadcast"),
    ("10.0.0.0/24", "10.0.0.255", "", {}, "network or broadcast"),
    ("10.0.0.0/24", "nope", "", {}, "invalid gateway"),
    ("10.0.0.0/24", "", "10.0.1.0/25", {}, "ip-range 10.0.1.0/25 is not in subnet"),
    ("10.0.0.0/24", "", "10.0.0.0", {}, "invalid ip-range"),
    ("10.0.0.0/24", "", "", {"r": "10.0.1.9"}, "aux address r=10.0.1.9 is not in subnet"),
    ("10.0.0.0/24", "", "", {"r": "x"}, "invalid aux address r"),
])
def test_pool_create_refuses_bad_input(subnet: str, gateway: str, ip_range: str, aux: dict[str, str],
                                       message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Pool.create(subnet, gateway, ip_range, aux)


def test_a_pool_gateway_defaults_to_the_first_host() -> None:
    pool = Pool.create("10.2.0.0/16")
    assert str(pool.gateway) == "10.2.0.1"
    assert pool.prefixlen == 16
    assert pool.allocate() == "10.2.0.2"


def test_an_ip_range_limits_automatic_addresses_but_not_requested_ones() -> None:
    pool = Pool.create("10.9.0.0/16", ip_range="10.9.5.0/30")
    # Docker hands out every address of the range that is not the subnet's network/broadcast/gateway
    assert [pool.allocate() for _ in range(4)] == ["10.9.5.0", "10.9.5.1", "10.9.5.2", "10.9.5.3"]
    with pytest.raises(WrongState, match="no available IPv4 addresses in 10.9.5.0/30"):
        pool.allocate()
    # --ip may still name any free address of the subnet
    assert pool.allocate("10.9.200.7") == "10.9.200.7"


def test_requested_addresses_must_be_free_and_in_the_subnet() -> None:
    pool = Pool.create("10.7.0.0/24", aux_addresses={"router": "10.7.0.9"})
    assert pool.allocate("10.7.0.50") == "10.7.0.50"
    with pytest.raises(AlreadyExists, match="Address already in use: 10.7.0.50"):
        pool.allocate("10.7.0.50")
    for reserved in ("10.7.0.1", "10.7.0.0", "10.7.0.255", "10.7.0.9"):
        with pytest.raises(AlreadyExists, match="in use"):
            pool.allocate(reserved)
    with pytest.raises(InvalidArgument, match="contain the IP address"):
        pool.allocate("10.8.0.5")
    with pytest.raises(InvalidArgument, match="invalid IP address"):
        pool.allocate("10.7.0.x")


def test_automatic_allocation_skips_the_gateway_aux_and_requested_addresses() -> None:
    pool = Pool.create("10.7.0.0/24", aux_addresses={"router": "10.7.0.9"})
    pool.allocate("10.7.0.5")
    assert [pool.allocate() for _ in range(8)] == [f"10.7.0.{i}" for i in (2, 3, 4, 6, 7, 8, 10, 11)]


def test_allocation_is_serial_and_wraps_round_to_released_addresses() -> None:
    pool = Pool.create("10.3.0.0/29")   # hosts .1-.6, gateway .1
    assert [pool.allocate() for _ in range(3)] == ["10.3.0.2", "10.3.0.3", "10.3.0.4"]
    pool.release("10.3.0.2")
    assert pool.allocate() == "10.3.0.5"         # not the one just released
    assert pool.allocate() == "10.3.0.6"
    assert pool.allocate() == "10.3.0.2"         # wraps round to the free ones
    with pytest.raises(WrongState, match="no available"):
        pool.allocate()
    pool.release("10.3.0.4")
    pool.release("10.3.0.4")                     # releasing twice is harmless
    assert pool.allocate() == "10.3.0.4"


def test_reserve_marks_addresses_found_again() -> None:
    pool = Pool.create("10.6.0.0/24")
    pool.reserve("10.6.0.2")
    assert pool.allocate() == "10.6.0.3"
    with pytest.raises(InvalidArgument, match="not in subnet 10.6.0.0/24"):
        pool.reserve("10.99.0.2")


def test_an_ipv6_pool_allocates_like_an_ipv4_one() -> None:
    pool = Pool.create("fd00:dead::/64")
    assert str(pool.gateway) == "fd00:dead::1"
    assert pool.allocate() == "fd00:dead::2"
    assert pool.allocate("fd00:dead::beef") == "fd00:dead::beef"
    with pytest.raises(AlreadyExists):
        pool.allocate("fd00:dead::beef")
    with pytest.raises(InvalidArgument, match="contain the IP address"):
        pool.allocate("10.0.0.1")


def test_the_mac_is_derived_from_the_address() -> None:
    assert mac_for("172.17.0.2") == "02:42:ac:11:00:02"
    assert mac_for("10.255.0.1") == "02:42:0a:ff:00:01"
