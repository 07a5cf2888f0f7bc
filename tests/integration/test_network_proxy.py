"""The userland port proxy, on loopback only: proxy 127.0.0.1:X -> backend 127.0.0.1:Y."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Awaitable, Callable

import pytest

from dockyard.network.proxy import PortProxy


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


async def tcp_backend(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> asyncio.Server:
    return await asyncio.start_server(handler, "127.0.0.1", 0)


async def digest_then_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read to EOF (the client's half-close), answer with the SHA-256 and the length, close."""
    h = hashlib.sha256()
    total = 0
    while chunk := await reader.read(1 << 20):
        h.update(chunk)
        total += len(chunk)
    writer.write(f"{h.hexdigest()} {total}".encode())
    await writer.drain()
    writer.close()


def port_of(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def test_tcp_half_close_reaches_the_backend_and_the_reply_comes_back() -> None:
    async def go() -> None:
        backend = await tcp_backend(digest_then_reply)
        proxy = PortProxy("127.0.0.1", 0, "127.0.0.1", port_of(backend))
        await proxy.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports["tcp"])
            writer.write(b"hello")
            writer.write_eof()
            reply = await reader.read()
            assert reply == f"{hashlib.sha256(b'hello').hexdigest()} 5".encode()
            writer.close()
            await writer.wait_closed()
        finally:
            await proxy.close()
            backend.close()
            await backend.wait_closed()

    run(go())


def test_tcp_large_transfers_both_ways_are_intact() -> None:
    size = 64 * 1024 * 1024
    payload = os.urandom(1 << 20)

    async def source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # the backend sends `size` bytes after the client half-closes its (empty) side
        await reader.read()
        for _ in range(size // len(payload)):
            writer.write(payload)
            await writer.drain()
        writer.close()

    async def go() -> None:
        sink = await tcp_backend(digest_then_reply)
        src = await tcp_backend(source)
        up = PortProxy("127.0.0.1", 0, "127.0.0.1", port_of(sink))
        down = PortProxy("127.0.0.1", 0, "127.0.0.1", port_of(src))
        await up.start()
        await down.start()
        try:
            expected = hashlib.sha256(payload * (size // len(payload))).hexdigest()
            # client -> proxy -> backend
            reader, writer = await asyncio.open_connection("127.0.0.1", up.ports["tcp"])
            for _ in range(size // len(payload)):
                writer.write(payload)
                await writer.drain()
            writer.write_eof()
            assert await reader.read() == f"{expected} {size}".encode()
            writer.close()
            # backend -> proxy -> client
            reader, writer = await asyncio.open_connection("127.0.0.1", down.ports["tcp"], limit=1 << 20)
            writer.write_eof()
            h = hashlib.sha256()
            total = 0
            while chunk := await reader.read(1 << 20):
                h.update(chunk)
                total += len(chunk)
            assert (h.hexdigest(), total) == (expected, size)
            writer.close()
        finally:
            await up.close()
            await down.close()
            for s in (sink, src):
                s.close()
                await s.wait_closed()

    run(go())


def test_tcp_backend_down_closes_the_client() -> None:
    async def go() -> None:
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()  # nothing listens there
        proxy = PortProxy("127.0.0.1", 0, "127.0.0.1", port)
        await proxy.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports["tcp"])
            try:
                assert await reader.read() == b""
            except ConnectionResetError:
                pass
            writer.close()
            await asyncio.sleep(0.05)
            assert not proxy._pairs
        finally:
            await proxy.close()

    run(go())


def test_close_stops_listening_and_cuts_open_connections() -> None:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    async def go() -> None:
        backend = await tcp_backend(hold)
        proxy = PortProxy("127.0.0.1", 0, "127.0.0.1", port_of(backend))
        await proxy.start()
        port = proxy.ports["tcp"]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)
            await proxy.close()
            try:
                assert await reader.read() == b""
            except ConnectionResetError:
                pass
            writer.close()
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", port)
        finally:
            await proxy.close()
            backend.close()
            await backend.wait_closed()

    run(go())


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.sources: set[tuple[str, int]] = set()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sources.add(addr)
        self.transport.sendto(b"echo:" + data, addr)  # type: ignore[attr-defined]


def test_udp_round_trips_per_client_flow_and_idle_timeout() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        transport, echo = await loop.create_datagram_endpoint(UdpEcho, local_addr=("127.0.0.1", 0))
        backend_port = transport.get_extra_info("sockname")[1]
        proxy = PortProxy("127.0.0.1", 0, "127.0.0.1", backend_port, ("udp",), udp_idle_timeout=0.3)
        await proxy.start()
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        try:
            for c in clients:
                c.setblocking(False)
                c.connect(("127.0.0.1", proxy.ports["udp"]))
            for i, c in enumerate(clients):
                for n in range(3):
                    await loop.sock_sendall(c, f"{i}-{n}".encode())
                    reply = await asyncio.wait_for(loop.sock_recv(c, 65535), 5)
                    assert reply == f"echo:{i}-{n}".encode()
            big = os.urandom(60000)
            await loop.sock_sendall(clients[0], big)
            assert await asyncio.wait_for(loop.sock_recv(clients[0], 65535), 5) == b"echo:" + big
            assert proxy._udp is not None
            assert len(proxy._udp.flows) == 2
            assert len(echo.sources) == 2  # one backend socket per client
            await asyncio.sleep(0.8)
            assert proxy._udp.flows == {}
            # a new datagram opens a new flow
            await loop.sock_sendall(clients[0], b"again")
            assert await asyncio.wait_for(loop.sock_recv(clients[0], 65535), 5) == b"echo:again"
        finally:
            for c in clients:
                c.close()
            await proxy.close()
            transport.close()

    run(go())


def test_tcp_and_udp_on_the_same_port() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        backend = await tcp_backend(digest_then_reply)
        transport, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=("127.0.0.1", port_of(backend)))
        proxy = PortProxy("127.0.0.1", 0, "127.0.0.1", port_of(backend), ("tcp", "udp"))
        await proxy.start()
        try:
            assert proxy.ports["tcp"] == proxy.ports["udp"]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                c.setblocking(False)
                c.connect(("127.0.0.1", proxy.ports["udp"]))
                await loop.sock_sendall(c, b"u")
                assert await asyncio.wait_for(loop.sock_recv(c, 100), 5) == b"echo:u"
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.ports["tcp"])
            writer.write_eof()
            assert (await reader.read()).endswith(b" 0")
            writer.close()
        finally:
            await proxy.close()
            transport.close()
            backend.close()
            await backend.wait_closed()

    run(go())


def test_bad_protocols_are_rejected() -> None:
    with pytest.raises(ValueError, match="sctp"):
        PortProxy("127.0.0.1", 0, "127.0.0.1", 1, ("sctp",))
