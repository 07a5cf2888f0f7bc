"""Bridges, veth pairs, addresses and routes over netlink (pyroute2), in the daemon's network
namespace and in containers' namespaces.

Everything acts on the calling process's current network namespace (the daemon may itself run
in a test namespace) except what is named by a namespace path, which is entered by a dedicated
thread (dockyard.network.nsutil.call_in_netns). pyroute2 is imported here only, lazily by the
daemon, never by the CLI or the runtime.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from dockyard.errors import SystemFailure
from dockyard.network.nsutil import call_in_netns


def _ipr() -> Any:
    from pyroute2 import IPRoute

    return IPRoute()


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _netlink_error() -> type[BaseException]:
    from pyroute2 import NetlinkError

    error: type[BaseException] = NetlinkError
    return error


def enable_forwarding() -> None:
    """IPv4 forwarding in this namespace (bridged containers reach out through it)."""
    with open("/proc/sys/net/ipv4/ip_forward", "w", encoding="ascii") as handle:
        handle.write("1\n")


def ensure_bridge(name: str, gateway_cidr: str, mtu: int = 1500) -> None:
    """The bridge with the gateway address, up; found again (not duplicated) when it exists."""
    address, _, prefix = gateway_cidr.partition("/")
    with _ipr() as ipr:
        index = _index(ipr, name)
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            except _netlink_error() as e:
                if getattr(e, "code", 0) != errno.EEXIST:
                    raise SystemFailure(f"cannot create bridge {name}: {e}") from None
            index = _index(ipr, name)
            if index is None:
                raise SystemFailure(f"bridge {name} vanished after it was created")
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
        if (address, int(prefix)) not in have:
            try:
                ipr.addr("add", index=index, address=address, prefixlen=int(prefix))
            except _netlink_error() as e:
                if getattr(e, "code", 0) != errno.EEXIST:
                    raise SystemFailure(f"cannot address bridge {name}: {e}") from None
        ipr.link("set", index=index, state="up")
    enable_forwarding()


def delete_link(name: str) -> None:
    """Remove a link of this namespace; nothing when it is gone already."""
    with _ipr() as ipr:
        index = _index(ipr, name)
        if index is None:
            return
        try:
            ipr.link("del", index=index)
        except _netlink_error() as e:
            if getattr(e, "code", 0) not in (errno.ENODEV, errno.ENOENT):
                raise SystemFailure(f"cannot remove {name}: {e}") from None


def create_veth_into(host_name: str, peer_name: str, netns_path: str, bridge: str, *,
                     container_ifname: str = "eth0", address_cidr: str, gateway: str | None,
                     mac: str | None = None, mtu: int = 1500) -> None:
    """A veth pair: `host_name` on `bridge` here, its peer moved into `netns_path` as
    `container_ifname` with the address (and, with `gateway`, the default route)."""
    with _ipr() as ipr:
        bridge_index = _index(ipr, bridge)
        if bridge_index is None:
            raise SystemFailure(f"bridge {bridge} does not exist")
        try:
            ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": peer_name}, mtu=mtu)
        except _netlink_error() as e:
            raise SystemFailure(f"cannot create the veth pair {host_name}: {e}") from None
        try:
            host_index = _index(ipr, host_name)
            peer_index = _index(ipr, peer_name)
            if host_index is None or peer_index is None:
                raise SystemFailure(f"the veth pair {host_name} vanished")
            ipr.link("set", index=host_index, master=bridge_index, state="up")
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                ipr.link("set", index=peer_index, net_ns_fd=fd)
            finally:
                os.close(fd)
        except BaseException:
            delete_link(host_name)
            raise
    try:
        call_in_netns(netns_path, lambda: _configure_inside(peer_name, container_ifname, address_cidr, gateway, mac))
    except BaseException:
        delete_link(host_name)  # takes the peer with it
        raise


def _configure_inside(peer_name: str, ifname: str, address_cidr: str, gateway: str | None, mac: str | None) -> None:
    address, _, prefix = address_cidr.partition("/")
    with _ipr() as ipr:
        lo = _index(ipr, "lo")
        if lo is not None:
            ipr.link("set", index=lo, state="up")
        index = _index(ipr, peer_name)
        if index is None:
            raise SystemFailure(f"{peer_name} did not arrive in the container's namespace")
        changes: dict[str, Any] = {"ifname": ifname}
        if mac:
            changes["address"] = mac
        ipr.link("set", index=index, **changes)
        ipr.addr("add", index=index, address=address, prefixlen=int(prefix))
        ipr.link("set", index=index, state="up")
        if gateway:
            ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=index)


def remove_interface_in(netns_path: str, ifname: str) -> None:
    """Remove an interface inside another namespace (a disconnect); its veth peer goes too."""
    def remove() -> None:
        with _ipr() as ipr:
            index = _index(ipr, ifname)
            if index is not None:
                ipr.link("del", index=index)
    call_in_netns(netns_path, remove)


def addresses_in(netns_path: str) -> list[tuple[str, str]]:
    """(interface, address/prefix) of every IPv4 address inside a namespace."""
    def collect() -> list[tuple[str, str]]:
        with _ipr() as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            return [(names.get(a["index"], "?"), f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
                    for a in ipr.get_addr(family=2)]
    out: list[tuple[str, str]] = call_in_netns(netns_path, collect)
    return out
