"""A network's IPAM.Config split into its IPv4 and IPv6 entries (dockyard.services.networks)."""

from __future__ import annotations

import pytest

from dockyard.errors import InvalidArgument
from dockyard.services.networks import _split_ipam


def test_one_ipv4_and_one_ipv6_entry() -> None:
    v4, v6 = _split_ipam([{"Subnet": "fd00::/64", "Gateway": "fd00::ffff"}, {"Subnet": "10.9.0.0/24"}])
    assert v4 == {"Subnet": "10.9.0.0/24"} and v6 == {"Subnet": "fd00::/64", "Gateway": "fd00::ffff"}
    assert _split_ipam([]) == ({}, {})
    assert _split_ipam([{"Subnet": "2001:389::/64"}]) == ({}, {"Subnet": "2001:389::/64"})
    assert _split_ipam([{"Gateway": ""}]) == ({"Gateway": ""}, {})


def test_refused() -> None:
    with pytest.raises(InvalidArgument, match="one IPv4 and one IPv6"):
        _split_ipam([{"Subnet": "10.0.0.0/24"}, {"Subnet": "10.1.0.0/24"}])
    with pytest.raises(InvalidArgument, match="one IPv4 and one IPv6"):
        _split_ipam([{"Subnet": "fd00::/64"}, {"Subnet": "fd01::/64"}])
    with pytest.raises(InvalidArgument, match="invalid subnet"):
        _split_ipam([{"Subnet": "fd00::zz/64"}])
