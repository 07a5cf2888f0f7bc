"""The embedded DNS server of user-defined networks, as Docker's (libnetwork's resolver.go).

Every container on a user-defined network gets a `Resolver`: UDP and TCP sockets on
127.0.0.11:53 inside the container's network namespace, served by the daemon's event loop in the
host's namespace. It answers for the names the daemon knows (containers, their aliases,
`name.network`) and forwards every other question to the upstream nameservers.

Behaviour, and where it follows Docker:

* A records from the lookup callback, TTL 600 as Docker's respTTL; AAAA from the IPv6 addresses
  the callback returns. A known name with no address of the asked family, or asked about with
  another type (MX, TXT, ...), gets NOERROR with no answer (NODATA), never a forwarded NXDOMAIN
  that would make the client believe the name does not exist.
* PTR for container addresses from the optional reverse callback; other PTRs are forwarded.
* Forwarding: the question is sent from the daemon's own namespace, over UDP to each upstream in
  turn with a timeout each (4 s, Docker's extIOTimeout); a truncated UDP answer is fetched again
  over TCP; questions that came over TCP go over TCP. If every upstream fails: SERVFAIL. With no
  upstream at all the resolver refuses to recurse: REFUSED, with RA clear.
* At most 1024 forwarded questions at a time (Docker's maxConcurrent); beyond that, SERVFAIL.
* An answer too big for the client's UDP size (512, or its EDNS size) goes back as an empty
  truncated answer, so the client asks again over TCP, which this server also serves.

Upstreams and loopback: Docker drops 127.x nameservers from a container's resolv.conf because
the container cannot reach the host's loopback. Here forwarding happens in the daemon's
namespace, where the host's loopback *is* reachable, so `host_nameservers` keeps loopback
nameservers by default (a local caching resolver such as systemd-resolved's 127.0.0.53 or
dnsmasq works, as it does with Docker 26+, which forwards to host-loopback servers from the
host's namespace). Pass include_loopback=False to get Docker's older filtering.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import secrets
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable, Sequence

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.reversename

from dockyard.network.nsutil import socket_in_netns

log = logging.getLogger(__name__)

EMBEDDED_DNS_ADDRESS = "127.0.0.11"
DEFAULT_TTL = 600
UPSTREAM_TIMEOUT = 4.0
MAX_CONCURRENT_FORWARDS = 1024
TCP_IDLE_TIMEOUT = 10.0
# Docker's fallbacks when the host's resolv.conf leaves a container no usable nameserver.
DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")

Names = Sequence[str]
LookupFn = Callable[[str], "Names | Awaitable[Names]"]

_HEADER = struct.Struct("!HHHHHH")


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """(nameservers, search domains, options) of a resolv.conf; as in glibc, the last
    search/domain line wins and options accumulate."""
    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith(("#", ";")):
            continue
        key, values = fields[0], fields[1:]
        if key == "nameserver" and values:
            nameservers.append(values[0])
        elif key in ("search", "domain"):
            search = values
        elif key == "options":
            options.extend(values)
    return nameservers, search, options


def host_nameservers(path: str = "/etc/resolv.conf", *, include_loopback: bool = True) -> list[tuple[str, int]]:
    """The upstreams for embedded DNS: the nameservers in `path`, as (address, 53).

    Loopback nameservers are kept by default because forwarding happens in the daemon's
    namespace, where they are reachable (see the module docstring). A missing file gives []."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    servers, _, _ = _parse_resolv_conf(text)
    return [(ns, 53) for ns in servers if include_loopback or not _is_loopback(ns)]


def resolv_conf_for_container(host_resolv_text: str, embedded: bool) -> str:
    """A container's /etc/resolv.conf, derived from the host's.

    embedded=True (user-defined networks): the embedded server as the only nameserver, the host's
    search domains and options, and `ndots:0` as Docker adds unless the host sets ndots itself.
    embedded=False (the default bridge): the host's file minus its loopback nameservers, which the
    container cannot reach; if none remain, Docker's public fallbacks 8.8.8.8 and 8.8.4.4 (Docker
    adds Google's IPv6 pair too on IPv6 networks; Dockyard does not)."""
    servers, search, options = _parse_resolv_conf(host_resolv_text)
    if embedded:
        lines = ["# Generated by Dockyard: embedded DNS server, forwarding to the host's nameservers",
                 f"# ExtServers: [{' '.join(servers)}]",
                 f"nameserver {EMBEDDED_DNS_ADDRESS}"]
        if search:
            lines.append("search " + " ".join(search))
        if not any(opt.startswith("ndots:") for opt in options):
            options = ["ndots:0", *options]
        lines.append("options " + " ".join(options))
        return "\n".join(lines) + "\n"
    kept = []
    for line in host_resolv_text.splitlines():
        fields = line.split()
        if fields[:1] == ["nameserver"] and len(fields) > 1 and _is_loopback(fields[1]):
            continue
        kept.append(line)
    if not any(not _is_loopback(ns) for ns in servers):
        kept.extend(f"nameserver {ns}" for ns in DEFAULT_NAMESERVERS)
    return "\n".join(kept) + "\n"


class _BadUpstreamAnswer(Exception):
    pass


def _flags(wire: bytes) -> int:
    return int(struct.unpack_from("!H", wire, 2)[0])


def _rcode(wire: bytes) -> int:
    """The header's rcode (an EDNS extended rcode is not needed to tell SERVFAIL or REFUSED)."""
    return _flags(wire) & 0xF


def _error_from_wire(wire: bytes, rcode: int) -> bytes | None:
    """A header-only answer with `rcode` for a query dnspython could not parse, or None when
    there is not even a header to answer."""
    if len(wire) < _HEADER.size:
        return None
    qid, flags = struct.unpack_from("!HH", wire)
    if flags & dns.flags.QR:
        return None  # never answer answers
    flags = dns.flags.QR | (flags & (dns.flags.RD | 0x7800)) | rcode
    return _HEADER.pack(qid, flags, 0, 0, 0, 0)


class Resolver:
    """Embedded DNS for one container.

    `lookup(name)` gets a lower-case name without the trailing dot and returns the container
    addresses it stands for (IPv4 and IPv6 strings; empty when unknown); `reverse(address)`
    returns the names for a container address ("web.mynet"). Either may be a coroutine function.
    `upstreams` are (address, port) pairs reached from the daemon's namespace."""

    def __init__(
        self,
        netns_path: str,
        lookup: LookupFn,
        *,
        reverse: LookupFn | None = None,
        upstreams: Iterable[tuple[str, int]] = (),
        address: str = EMBEDDED_DNS_ADDRESS,
        port: int = 53,
        timeout: float = UPSTREAM_TIMEOUT,
        ttl: int = DEFAULT_TTL,
    ) -> None:
        self.netns_path = netns_path
        self.address = address
        self.port = port
        self.timeout = timeout
        self.ttl = ttl
        self._lookup = lookup
        self._reverse = reverse
        self.upstreams: list[tuple[str, int]] = list(upstreams)
        self._udp: socket.socket | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._forwards = 0
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind 127.0.0.11:53 UDP and TCP in the container's namespace and start serving.
        The namespace's loopback interface must be up for queries to arrive."""
        if self._udp is not None or self._closed:
            raise RuntimeError("resolver already started or closed")
        udp = socket_in_netns(self.netns_path, socket.AF_INET, socket.SOCK_DGRAM, (self.address, self.port))
        try:
            tcp = socket_in_netns(self.netns_path, socket.AF_INET, socket.SOCK_STREAM, (self.address, self.port))
        except BaseException:
            udp.close()
            raise
        try:
            udp.setblocking(False)
            tcp.setblocking(False)
            tcp.listen(128)
            self._tcp_server = await asyncio.start_server(self._serve_tcp, sock=tcp)
        except BaseException:
            udp.close()
            tcp.close()
            raise
        self._udp = udp
        self._spawn(self._serve_udp(udp))

    async def close(self) -> None:
        """Stop serving: close the sockets and every connection, cancel every task."""
        self._closed = True
        if self._tcp_server is not None:
            self._tcp_server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._tcp_server is not None:
            await self._tcp_server.wait_closed()
            self._tcp_server = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    async def __aenter__(self) -> Resolver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- transports ------------------------------------------------------------------------

    async def _serve_udp(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                wire, client = await loop.sock_recvfrom(sock, 65535)
            except (ConnectionRefusedError, ConnectionResetError):
                continue  # ICMP errors from earlier answers
            self._spawn(self._answer_udp(sock, wire, client))

    async def _answer_udp(self, sock: socket.socket, wire: bytes, client: tuple[str, int]) -> None:
        try:
            reply = await self.handle_query(wire)
            if reply is not None:
                await asyncio.get_running_loop().sock_sendto(sock, reply, client)
        except OSError as exc:
            log.debug("embedded DNS: cannot answer %s: %s", client, exc)
        except Exception:
            log.exception("embedded DNS: query from %s failed", client)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)  # type: ignore[arg-type]
        try:
            while True:
                try:
                    async with asyncio.timeout(TCP_IDLE_TIMEOUT):
                        size = struct.unpack("!H", await reader.readexactly(2))[0]
                        wire = await reader.readexactly(size)
                except (asyncio.IncompleteReadError, TimeoutError):
                    return
                reply = await self.handle_query(wire, tcp=True)
                if reply is None:
                    return
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        except Exception:
            log.exception("embedded DNS: TCP query failed")
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)  # type: ignore[arg-type]
            writer.transport.abort()

    # -- answering -------------------------------------------------------------------------

    async def handle_query(self, wire: bytes, *, tcp: bool = False) -> bytes | None:
        """The answer, in wire format, to one query in wire format (None: send nothing).
        Over UDP the answer fits the client's size limit, truncated if need be."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return _error_from_wire(wire, dns.rcode.FORMERR)
        if query.flags & dns.flags.QR:
            return None
        if query.opcode() != dns.opcode.QUERY:
            return self._reply(query, dns.rcode.NOTIMP).to_wire()
        if len(query.question) != 1:
            return self._reply(query, dns.rcode.FORMERR).to_wire()
        try:
            local = await self._answer_locally(query)
        except Exception:
            log.exception("embedded DNS: lookup of %s failed", query.question[0].name)
            return self._reply(query, dns.rcode.SERVFAIL).to_wire()
        if local is not None:
            reply = local.to_wire()
        else:
            reply = await self._forward(query, wire, tcp)
        if not tcp:
            reply = self._fit_udp(query, reply)
        return reply

    def _reply(self, query: dns.message.Message, rcode: int) -> dns.message.Message:
        reply = dns.message.make_response(query, recursion_available=bool(self.upstreams))
        reply.set_rcode(rcode)
        return reply

    async def _call(self, fn: LookupFn, arg: str) -> list[str]:
        result = fn(arg)
        if inspect.isawaitable(result):
            result = await result
        return list(result)

    async def _answer_locally(self, query: dns.message.Message) -> dns.message.Message | None:
        """The answer for a name the daemon knows, or None to forward the question."""
        question = query.question[0]
        if question.rdclass != dns.rdataclass.IN:
            return None
        if question.rdtype == dns.rdatatype.PTR:
            return await self._answer_ptr(query)
        name = question.name.to_text(omit_final_dot=True).lower()
        if not name or name == ".":
            return None
        addresses = await self._call(self._lookup, name)
        if not addresses:
            return None
        reply = self._reply(query, dns.rcode.NOERROR)
        reply.flags |= dns.flags.AA
        wanted = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}.get(question.rdtype)
        if wanted is None:
            return reply  # a known name, another type: NODATA
        matching = [a for a in addresses if ipaddress.ip_address(a).version == wanted]
        if matching:
            reply.answer.append(dns.rrset.from_text_list(question.name, self.ttl, "IN", question.rdtype, matching))
        return reply

    async def _answer_ptr(self, query: dns.message.Message) -> dns.message.Message | None:
        if self._reverse is None:
            return None
        question = query.question[0]
        try:
            address = dns.reversename.to_address(question.name)
        except (dns.exception.SyntaxError, ValueError):
            return None
        names = await self._call(self._reverse, address)
        if not names:
            return None
        reply = self._reply(query, dns.rcode.NOERROR)
        reply.flags |= dns.flags.AA
        targets = [n if n.endswith(".") else n + "." for n in names]
        reply.answer.append(dns.rrset.from_text_list(question.name, self.ttl, "IN", "PTR", targets))
        return reply

    def _fit_udp(self, query: dns.message.Message, reply: bytes) -> bytes:
        limit = max(512, query.payload) if query.edns >= 0 else 512
        if len(reply) <= limit:
            return reply
        truncated = dns.message.make_response(query, recursion_available=bool(self.upstreams))
        truncated.flags |= dns.flags.TC
        try:
            truncated.set_rcode(dns.message.from_wire(reply).rcode())
        except dns.exception.DNSException:
            pass
        return truncated.to_wire()

    # -- forwarding ------------------------------------------------------------------------

    async def _forward(self, query: dns.message.Message, wire: bytes, tcp: bool) -> bytes:
        if not self.upstreams:
            refused = dns.message.make_response(query, recursion_available=False)
            refused.set_rcode(dns.rcode.REFUSED)
            return refused.to_wire()
        if self._forwards >= MAX_CONCURRENT_FORWARDS:
            log.warning("embedded DNS in %s: more than %d concurrent queries", self.netns_path, MAX_CONCURRENT_FORWARDS)
            return self._reply(query, dns.rcode.SERVFAIL).to_wire()
        self._forwards += 1
        try:
            for upstream in list(self.upstreams):
                qid = secrets.randbits(16)
                outgoing = struct.pack("!H", qid) + wire[2:]
                try:
                    async with asyncio.timeout(self.timeout):
                        answer = await self._exchange(upstream, outgoing, query, qid, tcp)
                except (OSError, TimeoutError, _BadUpstreamAnswer) as exc:
                    log.debug("embedded DNS: upstream %s failed for %s: %r", upstream, query.question[0].name, exc)
                    continue
                if _rcode(answer) in (dns.rcode.SERVFAIL, dns.rcode.REFUSED):
                    continue  # as Docker: perhaps transient, or a server that won't recurse; ask the next
                return struct.pack("!H", query.id) + answer[2:]
        finally:
            self._forwards -= 1
        return self._reply(query, dns.rcode.SERVFAIL).to_wire()

    async def _exchange(self, upstream: tuple[str, int], outgoing: bytes, query: dns.message.Message, qid: int,
                        tcp: bool) -> bytes:
        """One upstream's answer: over UDP, and again over TCP when that answer was truncated
        (keeping the truncated one if TCP fails); over TCP only for questions that came by TCP."""
        if tcp:
            return await self._exchange_tcp(upstream, outgoing, query, qid)
        answer = await self._exchange_udp(upstream, outgoing, query, qid)
        if not _flags(answer) & dns.flags.TC:
            return answer
        try:
            return await self._exchange_tcp(upstream, outgoing, query, qid)
        except (OSError, _BadUpstreamAnswer) as exc:
            log.debug("embedded DNS: TCP retry to %s failed: %r", upstream, exc)
            return answer

    @staticmethod
    def _matches(query: dns.message.Message, answer: bytes, qid: int) -> bool:
        try:
            parsed = dns.message.from_wire(answer)
        except dns.exception.DNSException:
            return False
        # dnspython compares the IDs too: compare with the ID we sent.
        sent = dns.message.Message(id=qid)
        sent.flags = query.flags
        sent.question = query.question
        return sent.is_response(parsed)

    async def _exchange_udp(self, upstream: tuple[str, int], outgoing: bytes, query: dns.message.Message, qid: int) -> bytes:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in upstream[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect(upstream)  # the kernel then drops datagrams from anyone else
            await loop.sock_sendall(sock, outgoing)
            while True:
                answer = await loop.sock_recv(sock, 65535)
                if self._matches(query, answer, qid):
                    return answer

    async def _exchange_tcp(self, upstream: tuple[str, int], outgoing: bytes, query: dns.message.Message, qid: int) -> bytes:
        reader, writer = await asyncio.open_connection(upstream[0], upstream[1])
        try:
            writer.write(struct.pack("!H", len(outgoing)) + outgoing)
            await writer.drain()
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            answer = await reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            raise _BadUpstreamAnswer("short TCP answer") from exc
        finally:
            writer.transport.abort()
        if not self._matches(query, answer, qid):
            raise _BadUpstreamAnswer("answer does not match the question")
        return answer
