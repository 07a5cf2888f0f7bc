"""Embedded DNS in a real network namespace: the resolver runs in this (the "daemon's") process,
its sockets live in a test netns, and the questions are asked from inside that netns.

Upstreams are fake servers on this namespace's 127.0.0.1, which the test netns cannot reach
itself: a forwarded answer proves forwarding happens from the daemon's side. No traffic leaves
loopback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import dns.message
import dns.rcode
import dns.rrset
import pytest

from dockyard.errors import SystemFailure
from dockyard.network.dns import Resolver
from dockyard.network.nsutil import call_in_netns, socket_in_netns
from netns_helpers import named_netns

pytestmark = pytest.mark.root

NAMES = {"web": ["172.30.0.2"], "web.testnet": ["172.30.0.2"], "db": ["172.30.0.3"]}

# Run inside the netns: ask 127.0.0.11 each question, print the answers as JSON.
ASK = r"""
import json, sys
import dns.message, dns.query, dns.rcode
out = []
for name, rdtype, proto in json.loads(sys.argv[1]):
    q = dns.message.make_query(name, rdtype)
    try:
        if proto == "tcp":
            r = dns.query.tcp(q, "127.0.0.11", timeout=3)
        else:
            r = dns.query.udp(q, "127.0.0.11", timeout=3)
    except Exception as exc:
        out.append({"error": type(exc).__name__})
        continue
    out.append({"rcode": dns.rcode.to_text(r.rcode()),
                "answers": sorted(rd.to_text() for rs in r.answer for rd in rs)})
print(json.dumps(out))
"""


@pytest.fixture
def netns() -> Iterator[str]:
    with named_netns() as path:
        yield path


async def ask_inside(netns_path: str, questions: list[tuple[str, str, str]]) -> list[dict[str, object]]:
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={netns_path}", sys.executable, "-c", ASK, json.dumps(questions),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    result: list[dict[str, object]] = json.loads(out)
    return result


class Upstream:
    """UDP DNS on this namespace's 127.0.0.1: ok.test -> 192.0.2.7, fail.test -> SERVFAIL."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    async def start(self) -> None:
        outer = self

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                q = dns.message.from_wire(data)
                r = dns.message.make_response(q)
                if q.question[0].name.to_text() == "ok.test.":
                    r.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", "A", "192.0.2.7"))
                else:
                    r.set_rcode(dns.rcode.SERVFAIL)
                assert outer.transport is not None
                outer.transport.sendto(r.to_wire(), addr)

        self.transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Proto, local_addr=("127.0.0.1", 0))
        self.port = self.transport.get_extra_info("sockname")[1]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def open_fds() -> set[str]:
    """This process's open sockets (what a resolver holds); pipes of the helper subprocess are
    closed by asyncio at its own pace and are left out."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(f"{fd}:{target}")
    return out


def test_socket_in_netns_binds_there_and_leaves_this_thread_alone(netns: str) -> None:
    mine = os.readlink("/proc/thread-self/ns/net")
    theirs = call_in_netns(netns, lambda: os.readlink("/proc/thread-self/ns/net"))
    assert theirs != mine
    sock = socket_in_netns(netns, socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.11", 0))
    try:
        port = sock.getsockname()[1]
        assert os.readlink("/proc/thread-self/ns/net") == mine
        # The socket is in the test netns: a datagram sent from there reaches it.
        script = f"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'hi', ('127.0.0.11', {port}))"
        subprocess.run(["nsenter", f"--net={netns}", sys.executable, "-c", script], check=True, timeout=30)
        sock.settimeout(5)
        assert sock.recvfrom(16)[0] == b"hi"
    finally:
        sock.close()


def test_socket_in_netns_reports_a_missing_namespace() -> None:
    with pytest.raises(SystemFailure, match="/run/netns/dyt-missing"):
        socket_in_netns("/run/netns/dyt-missing", socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0))


def test_container_names_over_udp_and_tcp(netns: str) -> None:
    async def go() -> None:
        async with Resolver(netns, lambda name: NAMES.get(name, [])):
            answers = await ask_inside(netns, [("web", "A", "udp"), ("WEB.testnet.", "A", "tcp"),
                                               ("db", "AAAA", "udp"), ("nosuch.example", "A", "udp")])
        assert answers == [
            {"rcode": "NOERROR", "answers": ["172.30.0.2"]},
            {"rcode": "NOERROR", "answers": ["172.30.0.2"]},
            {"rcode": "NOERROR", "answers": []},
            {"rcode": "REFUSED", "answers": []},  # no upstream configured
        ]

    asyncio.run(go())


def test_forwarding_happens_from_the_daemons_namespace(netns: str) -> None:
    async def go() -> None:
        upstream = Upstream()
        await upstream.start()
        try:
            dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            dead.bind(("127.0.0.1", 0))  # a silent upstream, tried first
            try:
                upstreams = [("127.0.0.1", dead.getsockname()[1]), ("127.0.0.1", upstream.port)]
                async with Resolver(netns, lambda name: NAMES.get(name, []), upstreams=upstreams, timeout=0.5):
                    answers = await ask_inside(netns, [("ok.test", "A", "udp"), ("ok.test", "A", "tcp"),
                                                       ("fail.test", "A", "udp"), ("web", "A", "udp")])
            finally:
                dead.close()
        finally:
            upstream.close()
        assert answers == [
            {"rcode": "NOERROR", "answers": ["192.0.2.7"]},
            # over TCP the question goes upstream over TCP, which this fake does not serve
            {"rcode": "SERVFAIL", "answers": []},
            {"rcode": "SERVFAIL", "answers": []},
            {"rcode": "NOERROR", "answers": ["172.30.0.2"]},
        ]

    asyncio.run(go())


def test_close_releases_the_sockets_and_the_port(netns: str) -> None:
    async def go() -> None:
        before = open_fds()
        resolver = Resolver(netns, lambda name: NAMES.get(name, []))
        await resolver.start()
        # an open TCP connection from inside, to be cut by close()
        holder = await asyncio.create_subprocess_exec(
            "nsenter", f"--net={netns}", sys.executable, "-c",
            "import socket,sys; s=socket.create_connection(('127.0.0.11',53)); print('up', flush=True); "
            "sys.stdout.write(repr(s.recv(1))+'\\n')",
            stdout=asyncio.subprocess.PIPE)
        try:
            assert holder.stdout is not None
            assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"up\n"
            await resolver.close()
            rest = await asyncio.wait_for(holder.stdout.read(), 30)
            assert rest.strip() == b"b''"  # the connection was closed
        finally:
            if holder.returncode is None:
                holder.kill()
            await holder.wait()
        assert open_fds() == before
        assert (await ask_inside(netns, [("web", "A", "udp")]))[0] == {"error": "Timeout"}
        # the port is free again: a new resolver binds it
        async with Resolver(netns, lambda name: NAMES.get(name, [])):
            assert (await ask_inside(netns, [("web", "A", "tcp")]))[0]["answers"] == ["172.30.0.2"]

    asyncio.run(go())


def test_many_concurrent_questions(netns: str) -> None:
    script = r"""
import asyncio, socket, struct, sys
import dns.message
async def main():
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False)
    s.connect(("127.0.0.11", 53))
    ids = set()
    for i in range(200):
        q = dns.message.make_query("web" if i % 2 else "db", "A"); q.id = i
        ids.add(i)
        await loop.sock_sendall(s, q.to_wire())
    got = 0
    while ids:
        r = dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(s, 4096), 5))
        ids.discard(r.id); got += 1
    print(got)
asyncio.run(main())
"""

    async def go() -> None:
        async with Resolver(netns, lambda name: NAMES.get(name, [])):
            proc = await asyncio.create_subprocess_exec(
                "nsenter", f"--net={netns}", sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0
        assert out.strip() == b"200"

    asyncio.run(go())


def test_stream_framing_of_several_questions_on_one_connection(netns: str) -> None:
    script = r"""
import socket, struct
import dns.message
s = socket.create_connection(("127.0.0.11", 53), timeout=5)
wire = b"".join(struct.pack("!H", len(w)) + w for w in
                (dns.message.make_query(n, "A").to_wire() for n in ("web", "db", "web")))
s.sendall(wire)
f = s.makefile("rb")
for _ in range(3):
    n = struct.unpack("!H", f.read(2))[0]
    r = dns.message.from_wire(f.read(n))
    print(r.answer[0][0].to_text())
"""

    async def go() -> None:
        async with Resolver(netns, lambda name: NAMES.get(name, [])):
            proc = await asyncio.create_subprocess_exec(
                "nsenter", f"--net={netns}", sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert out.decode().split() == ["172.30.0.2", "172.30.0.3", "172.30.0.2"]

    asyncio.run(go())

