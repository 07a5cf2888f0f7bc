"""Typed functions over netlink (pyroute2) for bridge networking: bridges, veth pairs into
containers' network namespaces, addresses, routes, the sysctls a bridge needs, and persistent
named network namespaces.

Where things happen:
- The bridge and the host end of each veth live in "the host's" namespace: the calling thread's
  current one (production: the daemon's own, which tests make a test namespace by starting the
  daemon under `nsenter --net=`), or the namespace at the path given as `netns=`.
- Anything inside a container is named by a namespace path (/proc/PID/ns/net, /run/netns/NAME)
  or a PID.

Another namespace is entered by a short-lived thread that calls setns() and nothing else
(dockyard.network.nsutil.call_in_netns), never by forking: the daemon is multithreaded, and a
netlink socket or a /proc/sys/net file opened by that thread belongs to its namespace. pyroute2
takes ~0.3 s to import, so it is imported inside the functions only.

Errors: SystemFailure (with errno) for what the kernel refuses, NotFound for a missing bridge
or interface where one is required, InvalidArgument for malformed addresses.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from dockyard.errors import InvalidArgument, NotFound, SystemFailure
from dockyard.linux import libc
from dockyard.network.nsutil import call_in_netns

T = TypeVar("T")

# What the bridge's namespace needs: IPv4 forwarding on (containers reach out through it).
FORWARDING_SYSCTLS = {"net/ipv4/ip_forward": "1"}


@dataclass(frozen=True)
class AddressInfo:
    """One address of an interface: ("eth0", "172.17.0.2/16", 4)."""

    ifname: str
    cidr: str
    family: int   # 4 or 6

    @property
    def address(self) -> str:
        return self.cidr.partition("/")[0]


def netns_path(target: str | int) -> str:
    """A namespace path for a PID, a /proc or /run path, or an `ip netns` name."""
    if isinstance(target, int):
        return f"/proc/{target}/ns/net"
    if target.isdigit():
        return f"/proc/{target}/ns/net"
    if "/" not in target:
        return f"/run/netns/{target}"
    return target


def _in(netns: str | int | None, fn: Callable[[], T]) -> T:
    """Run `fn` in `netns` (a dedicated thread) or, when None, here."""
    if netns is None:
        return fn()
    return call_in_netns(netns_path(netns), fn)


@contextmanager
def _ipr() -> Iterator[Any]:
    from pyroute2 import IPRoute, NetlinkError

    try:
        ipr = IPRoute()
    except NetlinkError as exc:
        raise SystemFailure(f"cannot open a netlink socket: {exc}", exc.code) from None
    try:
        yield ipr
    finally:
        ipr.close()


def _code(exc: BaseException) -> int:
    return int(getattr(exc, "code", 0) or 0)


def _netlink_error() -> type[BaseException]:
    from pyroute2 import NetlinkError

    error: type[BaseException] = NetlinkError
    return error


def _fail(what: str, exc: BaseException) -> SystemFailure:
    code = _code(exc)
    reason = os.strerror(code) if code else str(exc)
    return SystemFailure(f"{what}: {reason}", code)


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _split_cidr(cidr: str) -> tuple[str, int, int]:
    """("10.0.0.1", 24, 4) from "10.0.0.1/24"; InvalidArgument when malformed."""
    try:
        iface = ipaddress.ip_interface(cidr)
    except ValueError:
        raise InvalidArgument(f"invalid address {cidr!r}: expected ADDRESS/PREFIX") from None
    if "/" not in cidr:
        raise InvalidArgument(f"invalid address {cidr!r}: the prefix length is missing")
    return str(iface.ip), iface.network.prefixlen, iface.version


def _family(version: int) -> int:
    import socket

    return socket.AF_INET if version == 4 else socket.AF_INET6


# --- sysctls -------------------------------------------------------------------------------


def _sysctl_path(key: str) -> str:
    """/proc/sys/net/ipv4/ip_forward for "net.ipv4.ip_forward" or "net/ipv4/ip_forward" (use
    the slash form for keys with an interface name that contains a dot)."""
    return "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))


def write_sysctl(key: str, value: str, netns: str | int | None = None) -> None:
    """Write /proc/sys/<key> ("net/ipv4/ip_forward") in `netns` (the net.* keys are per
    namespace: the file is opened by a thread in that namespace)."""
    path = _sysctl_path(key)

    def write() -> None:
        try:
            with open(path, "w", encoding="ascii") as handle:
                handle.write(value + "\n")
        except OSError as exc:
            raise SystemFailure(f"cannot set {key}={value}: {exc.strerror}", exc.errno or 0) from None

    _in(netns, write)


def read_sysctl(key: str, netns: str | int | None = None) -> str:
    path = _sysctl_path(key)

    def read() -> str:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()

    return _in(netns, read)


def enable_forwarding(netns: str | int | None = None) -> None:
    """IPv4 forwarding in the bridge's namespace: containers reach out through it."""
    for key, value in FORWARDING_SYSCTLS.items():
        write_sysctl(key, value, netns)


def _bridge_sysctls(name: str) -> None:
    """Per-bridge settings, as Docker makes them: no IPv6 autoconfiguration from RAs on the
    bridge (it is a router for its containers). Missing IPv6 support is not an error."""
    for key, value in ((f"net/ipv6/conf/{name}/accept_ra", "0"),):
        try:
            with open("/proc/sys/" + key, "w", encoding="ascii") as handle:
                handle.write(value + "\n")
        except OSError:
            pass


# --- links ---------------------------------------------------------------------------------


def link_exists(name: str, netns: str | int | None = None) -> bool:
    def look() -> bool:
        with _ipr() as ipr:
            return _index(ipr, name) is not None

    return _in(netns, look)


def ensure_bridge(name: str, gateway_cidr: str, mtu: int = 1500, netns: str | int | None = None) -> None:
    """The bridge `name` with the gateway address (e.g. "172.17.0.1/16"), up, with forwarding
    enabled in its namespace. Idempotent: a bridge that exists already (a daemon restart) is
    reused and only what is missing is added; a link of that name that is not a bridge is an
    error. Other addresses the bridge has are left alone."""
    address, prefix, version = _split_cidr(gateway_cidr)

    def make() -> None:
        error = _netlink_error()
        with _ipr() as ipr:
            index = _index(ipr, name)
            if index is None:
                try:
                    ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
                except error as exc:
                    if _code(exc) != errno.EEXIST:
                        raise _fail(f"cannot create bridge {name}", exc) from None
                index = _index(ipr, name)
                if index is None:
                    raise SystemFailure(f"bridge {name} vanished after it was created")
            else:
                kind = _link_kind(ipr, index)
                if kind != "bridge":
                    raise SystemFailure(f"{name} exists and is not a bridge (it is a {kind or 'plain'} link)",
                                        errno.EEXIST)
            _bridge_sysctls(name)
            have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=_family(version))}
            if (address, prefix) not in have:
                try:
                    ipr.addr("add", index=index, address=address, prefixlen=prefix)
                except error as exc:
                    if _code(exc) != errno.EEXIST:
                        raise _fail(f"cannot give bridge {name} the address {gateway_cidr}", exc) from None
            try:
                ipr.link("set", index=index, mtu=mtu, state="up")
            except error as exc:
                raise _fail(f"cannot bring bridge {name} up", exc) from None
        enable_forwarding()

    _in(netns, make)


def _link_kind(ipr: Any, index: int) -> str | None:
    link = ipr.get_links(index)[0]
    info = link.get_attr("IFLA_LINKINFO")
    if info is None:
        return None
    kind: str | None = info.get_attr("IFLA_INFO_KIND")
    return kind


def delete_link(name: str, netns: str | int | None = None) -> bool:
    """Remove a link (a bridge, or a veth with its peer); False when it was not there."""

    def remove() -> bool:
        error = _netlink_error()
        with _ipr() as ipr:
            index = _index(ipr, name)
            if index is None:
                return False
            try:
                ipr.link("del", index=index)
            except error as exc:
                if _code(exc) in (errno.ENODEV, errno.ENOENT):
                    return False
                raise _fail(f"cannot remove {name}", exc) from None
            return True

    return _in(netns, remove)


def create_veth_into(host_name: str, peer_name: str, container_netns: str | int, bridge: str, *,
                     container_ifname: str = "eth0", address_cidr: str, gateway: str | None,
                     mac: str | None = None, mtu: int = 1500, netns: str | int | None = None) -> None:
    """A veth pair: `host_name` attached to `bridge` (in `netns`, default the current one) and
    up; its peer moved into `container_netns` (a path such as /proc/PID/ns/net, or a PID),
    renamed `container_ifname`, given `address_cidr` and a MAC, up together with `lo`, and -
    when `gateway` is given - the default route via it. On any failure nothing is left behind.

    mac: None derives Docker's from an IPv4 address (02:42 and the address's four bytes, see
    dockyard.network.ipam.mac_for); "" keeps the one the kernel chose."""
    address, _, version = _split_cidr(address_cidr)
    if mac is None and version == 4:
        mac = "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)
    target = netns_path(container_netns)

    def plug() -> None:
        error = _netlink_error()
        with _ipr() as ipr:
            bridge_index = _index(ipr, bridge)
            if bridge_index is None:
                raise NotFound(f"bridge {bridge} does not exist")
            try:
                ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": peer_name, "mtu": mtu}, mtu=mtu)
            except error as exc:
                raise _fail(f"cannot create the veth pair {host_name}/{peer_name}", exc) from None
            try:
                host_index = _index(ipr, host_name)
                peer_index = _index(ipr, peer_name)
                if host_index is None or peer_index is None:
                    raise SystemFailure(f"the veth pair {host_name}/{peer_name} vanished")
                ipr.link("set", index=host_index, master=bridge_index)
                ipr.link("set", index=host_index, state="up")
                try:
                    fd = os.open(target, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    raise SystemFailure(f"cannot open network namespace {target}: {exc.strerror}", exc.errno or 0) from None
                try:
                    ipr.link("set", index=peer_index, net_ns_fd=fd)
                finally:
                    os.close(fd)
            except error as exc:
                _delete_quietly(ipr, host_name)
                raise _fail(f"cannot plug {host_name} into {bridge} and {target}", exc) from None
            except BaseException:
                _delete_quietly(ipr, host_name)
                raise

    def undo() -> None:
        with _ipr() as ipr:
            _delete_quietly(ipr, host_name)

    _in(netns, plug)
    try:
        call_in_netns(target, lambda: _configure_inside(peer_name, container_ifname, address_cidr, gateway, mac))
    except BaseException:
        _in(netns, undo)   # deleting the host end takes the peer with it, wherever it is
        raise


def _delete_quietly(ipr: Any, name: str) -> None:
    index = _index(ipr, name)
    if index is not None:
        try:
            ipr.link("del", index=index)
        except _netlink_error():
            pass


def _configure_inside(peer_name: str, ifname: str, address_cidr: str, gateway: str | None, mac: str | None) -> None:
    address, prefix, version = _split_cidr(address_cidr)
    error = _netlink_error()
    with _ipr() as ipr:
        try:
            lo = _index(ipr, "lo")
            if lo is not None:
                ipr.link("set", index=lo, state="up")
            index = _index(ipr, peer_name)
            if index is None:
                raise SystemFailure(f"{peer_name} did not arrive in the container's namespace")
            if _index(ipr, ifname) not in (None, index):
                raise SystemFailure(f"the container already has an interface {ifname}", errno.EEXIST)
            changes: dict[str, Any] = {"ifname": ifname}
            if mac:
                changes["address"] = mac
            ipr.link("set", index=index, **changes)
            ipr.addr("add", index=index, address=address, prefixlen=prefix)
            ipr.link("set", index=index, state="up")
            if gateway:
                default = "0.0.0.0/0" if version == 4 else "::/0"
                ipr.route("add", dst=default, gateway=gateway, oif=index, family=_family(version))
        except error as exc:
            raise _fail(f"cannot configure {ifname} ({address_cidr}) in the container", exc) from None


IFA_F_NODAD = 0x02  # an address usable at once: no duplicate address detection (Docker's choice for IPv6)


def add_address_in(container_netns: str | int | None, ifname: str, address_cidr: str, *,
                   gateway: str | None = None) -> None:
    """One more address on an interface in a namespace (None: the current one), an IPv6 one
    say, without duplicate address detection; with `gateway`, the default route of that family."""
    address, prefix, version = _split_cidr(address_cidr)

    def add() -> None:
        error = _netlink_error()
        with _ipr() as ipr:
            index = _index(ipr, ifname)
            if index is None:
                raise NotFound(f"no interface {ifname} in {netns_path(container_netns) if container_netns else 'this namespace'}")
            try:
                ipr.addr("add", index=index, address=address, prefixlen=prefix,
                         **({"flags": IFA_F_NODAD} if version == 6 else {}))
            except error as exc:
                if _code(exc) != errno.EEXIST:
                    raise _fail(f"cannot add {address_cidr} to {ifname}", exc) from None
            if gateway:
                try:
                    ipr.route("add", dst="0.0.0.0/0" if version == 4 else "::/0", gateway=gateway, oif=index,
                              family=_family(version))
                except error as exc:
                    if _code(exc) != errno.EEXIST:
                        raise _fail(f"cannot route through {gateway} on {ifname}", exc) from None

    _in(container_netns, add)


def remove_interface_in(container_netns: str | int, ifname: str) -> bool:
    """Remove an interface inside a namespace (a disconnect); a veth's peer on the bridge goes
    with it. False when it was not there."""
    return delete_link(ifname, netns=container_netns)


def list_addresses_in(container_netns: str | int | None) -> list[AddressInfo]:
    """Every address of every interface in a namespace (None: the current one), IPv4 first."""

    def collect() -> list[AddressInfo]:
        import socket

        with _ipr() as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            out = []
            for a in ipr.get_addr():
                version = 4 if a["family"] == socket.AF_INET else 6
                out.append(AddressInfo(names.get(a["index"], "?"), f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}", version))
            return sorted(out, key=lambda i: (i.family, i.ifname, i.cidr))

    return _in(container_netns, collect)


def list_links_in(container_netns: str | int | None) -> dict[str, dict[str, Any]]:
    """{name: {"index", "kind", "master", "up", "mac", "mtu"}} of a namespace's links."""

    def collect() -> dict[str, dict[str, Any]]:
        with _ipr() as ipr:
            links = ipr.get_links()
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
            out: dict[str, dict[str, Any]] = {}
            for link in links:
                info = link.get_attr("IFLA_LINKINFO")
                out[link.get_attr("IFLA_IFNAME")] = {
                    "index": link["index"],
                    "kind": info.get_attr("IFLA_INFO_KIND") if info is not None else None,
                    "master": names.get(link.get_attr("IFLA_MASTER")),
                    "up": bool(link["flags"] & 1),
                    "mac": link.get_attr("IFLA_ADDRESS"),
                    "mtu": link.get_attr("IFLA_MTU"),
                }
            return out

    return _in(container_netns, collect)


def default_gateway_in(container_netns: str | int | None) -> str | None:
    """The IPv4 default route's gateway in a namespace, or None."""

    def find() -> str | None:
        import socket

        with _ipr() as ipr:
            for route in ipr.get_routes(family=socket.AF_INET):
                if route["dst_len"] == 0 and route.get_attr("RTA_GATEWAY"):
                    gw: str = route.get_attr("RTA_GATEWAY")
                    return gw
        return None

    return _in(container_netns, find)


def routed_subnets(exclude_links: set[str] | frozenset[str] = frozenset(), netns: str | int | None = None) -> list[str]:
    """The IPv4 subnets routed in a namespace (not the default route), except those through
    `exclude_links` (Dockyard's own bridges): the "in use" list for ipam.pick_subnet."""

    def collect() -> list[str]:
        import socket

        with _ipr() as ipr:
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            out = set()
            for route in ipr.get_routes(family=socket.AF_INET, table=254):
                dst = route.get_attr("RTA_DST")
                if not dst or route["dst_len"] == 0:
                    continue
                if names.get(route.get_attr("RTA_OIF"), "") in exclude_links:
                    continue
                out.add(str(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False)))
            return sorted(out)

    return _in(netns, collect)


# --- persistent named namespaces ----------------------------------------------------------------


def create_named_netns(directory: str, name: str) -> str:
    """A new, empty network namespace kept alive by a bind mount at `directory/name` (as
    `ip netns add` does under /run/netns), with `lo` up; returns the path. The namespace is made
    by a dedicated thread that unshares its network namespace, mounts it and exits.

    Unlike `ip netns add`, the directory is not made a shared mount point: copies of the mount
    taken by mount namespaces created meanwhile keep the namespace alive until they go."""
    if not name or "/" in name or name in (".", ".."):
        raise InvalidArgument(f"invalid network namespace name {name!r}")
    os.makedirs(directory, mode=0o755, exist_ok=True)
    path = os.path.join(directory, name)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    except FileExistsError:
        raise SystemFailure(f"network namespace {path} exists already", errno.EEXIST) from None
    outcome: dict[str, BaseException] = {}

    def worker() -> None:
        try:
            libc.unshare(libc.CLONE_NEWNET)
            libc.mount("/proc/thread-self/ns/net", path, None, libc.MS_BIND)
        except BaseException as exc:  # handed to the caller
            outcome["error"] = exc
        # this thread now lives in the new namespace and exits without running anything else

    thread = threading.Thread(target=worker, name=f"netns-create:{name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        os.unlink(path)
        raise outcome["error"]
    try:
        _in(path, _lo_up)
    except BaseException:
        remove_named_netns(path)
        raise
    return path


def _lo_up() -> None:
    with _ipr() as ipr:
        index = _index(ipr, "lo")
        if index is not None:
            ipr.link("set", index=index, state="up")


def remove_named_netns(path: str) -> None:
    """Unmount and remove a namespace made by create_named_netns; nothing when it is gone.
    The namespace itself ends when nothing else (a process, another mount) holds it."""
    try:
        libc.umount(path, libc.MNT_DETACH)
    except SystemFailure as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@dataclass
class NetnsHandle:
    """A persistent named network namespace: `with NetnsHandle.create(dir, name) as ns: ...`."""

    path: str

    @classmethod
    def create(cls, directory: str, name: str) -> NetnsHandle:
        return cls(create_named_netns(directory, name))

    def remove(self) -> None:
        remove_named_netns(self.path)

    def __enter__(self) -> NetnsHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
