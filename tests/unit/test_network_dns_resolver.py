"""The embedded DNS server's answers and forwarding, without sockets in other namespaces.

Queries go straight to Resolver.handle_query; upstreams are fake servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rrset
import pytest

from dockyard.network.dns import Resolver, host_nameservers, resolv_conf_for_container

NAMES = {
    "web": ["172.20.0.2"],
    "web.mynet": ["172.20.0.2"],
    "db": ["172.20.0.3", "fd00::3"],
    "alias-of-db": ["172.20.0.3", "fd00::3"],
}
REVERSE = {"172.20.0.2": ["web.mynet"]}


def lookup(name: str) -> list[str]:
    return NAMES.get(name, [])


def reverse(address: str) -> list[str]:
    return REVERSE.get(address, [])


def query(name: str, rdtype: str = "A", **kw: object) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]


def ask(resolver: Resolver, q: dns.message.Message, tcp: bool = False) -> dns.message.Message:
    async def go() -> bytes | None:
        return await resolver.handle_query(q.to_wire(), tcp=tcp)

    wire = asyncio.run(go())
    assert wire is not None
    answer = dns.message.from_wire(wire)
    assert q.is_response(answer)
    return answer


def addresses(answer: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in answer.answer for rd in rrset)


class FakeUpstream:
    """A DNS server on 127.0.0.1 (UDP and TCP on the same port) with scripted behaviour:
    ok.test -> 192.0.2.1; big.test -> truncated over UDP, 60 records over TCP; fail.test ->
    SERVFAIL; slow.test -> no answer; anything else -> NXDOMAIN."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        q = dns.message.from_wire(wire)
        name = q.question[0].name.to_text(omit_final_dot=True)
        self.seen.append((name, transport))
        r = dns.message.make_response(q)
        if name == "slow.test":
            return None
        if name == "ok.test":
            r.answer.append(dns.rrset.from_text(q.question[0].name, 30, "IN", "A", "192.0.2.1"))
        elif name == "big.test":
            if transport == "udp":
                r.flags |= dns.flags.TC
            else:
                r.answer.append(dns.rrset.from_text_list(q.question[0].name, 30, "IN", "A",
                                                         [f"198.51.100.{i}" for i in range(1, 61)]))
        elif name == "fail.test":
            r.set_rcode(dns.rcode.SERVFAIL)
        else:
            r.set_rcode(dns.rcode.NXDOMAIN)
        return r.to_wire()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        upstream = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                reply = upstream.answer(data, "udp")
                if reply is not None:
                    self.transport.sendto(reply, addr)  # type: ignore[attr-defined]

        async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = upstream.answer(await reader.readexactly(size), "tcp")
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        for _ in range(20):
            self._udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
            self.port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(tcp, "127.0.0.1", self.port)
                return
            except OSError:
                self._udp.close()
        raise RuntimeError("no free port pair")

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()


def with_upstream(fn: Callable[[FakeUpstream], Awaitable[None]]) -> None:
    async def go() -> None:
        upstream = FakeUpstream()
        await upstream.start()
        try:
            await fn(upstream)
        finally:
            await upstream.close()

    asyncio.run(go())


async def ask_async(resolver: Resolver, q: dns.message.Message, tcp: bool = False) -> dns.message.Message:
    wire = await resolver.handle_query(q.to_wire(), tcp=tcp)
    assert wire is not None
    answer = dns.message.from_wire(wire)
    assert q.is_response(answer)
    return answer


# -- local names ------------------------------------------------------------------------------


def test_a_record_for_a_container_name() -> None:
    r = Resolver("/nonexistent", lookup)
    answer = ask(r, query("web"))
    assert answer.rcode() == dns.rcode.NOERROR
    assert addresses(answer) == ["172.20.0.2"]
    assert answer.answer[0].ttl == 600
    assert answer.flags & dns.flags.AA


def test_names_are_case_insensitive_with_or_without_the_trailing_dot() -> None:
    r = Resolver("/nonexistent", lookup)
    assert addresses(ask(r, query("WEB.MyNet."))) == ["172.20.0.2"]
    assert addresses(ask(r, query("Alias-Of-DB"))) == ["172.20.0.3"]


def test_the_answer_keeps_the_asked_spelling() -> None:
    answer = ask(Resolver("/nonexistent", lookup), query("WeB"))
    assert answer.answer[0].name.to_text() == "WeB."


def test_aaaa_for_an_ipv4_only_container_is_nodata() -> None:
    answer = ask(Resolver("/nonexistent", lookup), query("web", "AAAA"))
    assert answer.rcode() == dns.rcode.NOERROR
    assert answer.answer == []


def test_aaaa_returns_the_ipv6_addresses() -> None:
    answer = ask(Resolver("/nonexistent", lookup), query("db", "AAAA"))
    assert addresses(answer) == ["fd00::3"]
    assert addresses(ask(Resolver("/nonexistent", lookup), query("db", "A"))) == ["172.20.0.3"]


def test_other_types_for_a_known_name_are_nodata_not_forwarded() -> None:
    answer = ask(Resolver("/nonexistent", lookup, upstreams=[("127.0.0.1", 9)]), query("web", "MX"))
    assert answer.rcode() == dns.rcode.NOERROR
    assert answer.answer == []


def test_ptr_for_a_container_address() -> None:
    answer = ask(Resolver("/nonexistent", lookup, reverse=reverse), query("2.0.20.172.in-addr.arpa", "PTR"))
    assert [rd.to_text() for rd in answer.answer[0]] == ["web.mynet."]


def test_async_lookup_callbacks_are_awaited() -> None:
    async def alookup(name: str) -> list[str]:
        return lookup(name)

    assert addresses(ask(Resolver("/nonexistent", alookup), query("web"))) == ["172.20.0.2"]


def test_a_failing_lookup_gives_servfail() -> None:
    def broken(name: str) -> list[str]:
        raise RuntimeError("store unavailable")

    assert ask(Resolver("/nonexistent", broken), query("web")).rcode() == dns.rcode.SERVFAIL


def test_unknown_names_without_upstreams_are_refused() -> None:
    answer = ask(Resolver("/nonexistent", lookup), query("example.com"))
    assert answer.rcode() == dns.rcode.REFUSED
    assert not answer.flags & dns.flags.RA


def test_garbage_gets_formerr_or_nothing() -> None:
    r = Resolver("/nonexistent", lookup)

    async def go(wire: bytes) -> bytes | None:
        return await r.handle_query(wire)

    assert asyncio.run(go(b"\x01")) is None
    reply = asyncio.run(go(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff"))
    assert reply is not None
    assert reply[:2] == b"\x12\x34"
    assert reply[3] & 0xF == dns.rcode.FORMERR
    answer = dns.message.make_response(query("web"))
    assert asyncio.run(go(answer.to_wire())) is None  # never answer an answer


def test_non_query_opcodes_are_not_implemented() -> None:
    q = query("web")
    q.set_opcode(dns.opcode.NOTIFY)
    assert ask(Resolver("/nonexistent", lookup), q).rcode() == dns.rcode.NOTIMP


# -- forwarding ------------------------------------------------------------------------------


def test_unknown_names_are_forwarded_and_the_id_restored() -> None:
    async def check(up: FakeUpstream) -> None:
        r = Resolver("/nonexistent", lookup, upstreams=[("127.0.0.1", up.port)])
        q = query("ok.test")
        answer = await ask_async(r, q)
        assert answer.id == q.id
        assert addresses(answer) == ["192.0.2.1"]
        assert up.seen == [("ok.test", "udp")]
        nx = await ask_async(r, query("nothing.test"))
        assert nx.rcode() == dns.rcode.NXDOMAIN

    with_upstream(check)


def test_truncated_udp_answers_are_fetched_again_over_tcp() -> None:
    async def check(up: FakeUpstream) -> None:
        r = Resolver("/nonexistent", lookup, upstreams=[("127.0.0.1", up.port)])
        answer = await ask_async(r, query("big.test", use_edns=0, payload=4096))
        assert len(addresses(answer)) == 60
        assert up.seen == [("big.test", "udp"), ("big.test", "tcp")]

    with_upstream(check)


def test_answers_too_big_for_the_client_are_truncated_and_whole_over_tcp() -> None:
    async def check(up: FakeUpstream) -> None:
        r = Resolver("/nonexistent", lookup, upstreams=[("127.0.0.1", up.port)])
        small = await ask_async(r, query("big.test"))  # no EDNS: 512 bytes
        assert small.flags & dns.flags.TC
        assert small.answer == []
        whole = await ask_async(r, query("big.test"), tcp=True)
        assert len(addresses(whole)) == 60
        assert up.seen[-1] == ("big.test", "tcp")

    with_upstream(check)


def test_servfail_and_silent_upstreams_fall_through_to_the_next() -> None:
    async def check(up: FakeUpstream) -> None:
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        try:
            r = Resolver("/nonexistent", lookup, timeout=0.3,
                         upstreams=[("127.0.0.1", silent.getsockname()[1]), ("127.0.0.1", up.port)])
            assert addresses(await ask_async(r, query("ok.test"))) == ["192.0.2.1"]
        finally:
            silent.close()

    with_upstream(check)


def test_all_upstreams_failing_gives_servfail() -> None:
    async def check(up: FakeUpstream) -> None:
        r = Resolver("/nonexistent", lookup, timeout=0.3, upstreams=[("127.0.0.1", up.port)])
        assert (await ask_async(r, query("fail.test"))).rcode() == dns.rcode.SERVFAIL
        slow = await ask_async(r, query("slow.test"))
        assert slow.rcode() == dns.rcode.SERVFAIL
        assert slow.flags & dns.flags.RA

    with_upstream(check)


def test_unknown_ptr_is_forwarded() -> None:
    async def check(up: FakeUpstream) -> None:
        r = Resolver("/nonexistent", lookup, reverse=reverse, upstreams=[("127.0.0.1", up.port)])
        answer = await ask_async(r, query("9.9.20.172.in-addr.arpa", "PTR"))
        assert answer.rcode() == dns.rcode.NXDOMAIN
        assert up.seen == [("9.9.20.172.in-addr.arpa", "udp")]

    with_upstream(check)


# -- resolv.conf -----------------------------------------------------------------------------

HOST = """\
# managed by something
nameserver 127.0.0.53
nameserver 10.0.0.2
nameserver ::1
search corp.example lab.example
options edns0 trust-ad
"""


def test_host_nameservers_keeps_loopback_by_default(tmp_path) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(HOST)
    assert host_nameservers(str(path)) == [("127.0.0.53", 53), ("10.0.0.2", 53), ("::1", 53)]
    assert host_nameservers(str(path), include_loopback=False) == [("10.0.0.2", 53)]
    assert host_nameservers(str(tmp_path / "missing")) == []


def test_embedded_resolv_conf() -> None:
    text = resolv_conf_for_container(HOST, embedded=True)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["nameserver 127.0.0.11", "search corp.example lab.example", "options ndots:0 edns0 trust-ad"]


def test_embedded_resolv_conf_keeps_the_hosts_ndots() -> None:
    text = resolv_conf_for_container("nameserver 10.0.0.2\noptions ndots:2\n", embedded=True)
    assert "options ndots:2\n" in text
    assert "ndots:0" not in text


def test_default_bridge_resolv_conf_drops_loopback_nameservers() -> None:
    text = resolv_conf_for_container(HOST, embedded=False)
    assert "nameserver 10.0.0.2" in text.splitlines()
    assert "127.0.0.53" not in text and "::1" not in text
    assert "search corp.example lab.example" in text
    assert "8.8.8.8" not in text


def test_default_bridge_falls_back_to_public_nameservers() -> None:
    text = resolv_conf_for_container("nameserver 127.0.0.53\nsearch x\n", embedded=False)
    assert [line for line in text.splitlines() if line.startswith("nameserver")] == [
        "nameserver 8.8.8.8", "nameserver 8.8.4.4"]


@pytest.mark.parametrize("embedded", [True, False])
def test_resolv_conf_ends_with_a_newline(embedded: bool) -> None:
    assert resolv_conf_for_container("", embedded).endswith("\n")
