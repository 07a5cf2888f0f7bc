"""The userland proxy for published ports, as Docker's docker-proxy, inside the daemon.

A `PortProxy` listens on host_ip:host_port in the daemon's namespace and forwards to
container_ip:container_port.

TCP: one backend connection per client connection. Data is handed from one transport to the
other as it arrives (the event loop reads up to 256 KiB at a time); when a side's send buffer
passes the high-water mark, reading from the other side pauses until it drains, so memory per
connection stays bounded. A FIN from one side becomes shutdown(SHUT_WR) on the other (half-close),
and the pair is closed when both directions are finished or either side fails (a failure resets
the other side, so the peer sees an error rather than a clean end).

UDP: one connected socket towards the container per client address (a "flow"), so the answers
can be sent back to the right client; a flow that sees no traffic either way for
`udp_idle_timeout` seconds (Docker's 90) is closed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterable
from typing import Any, cast

log = logging.getLogger(__name__)

BUFFER_SIZE = 256 * 1024
UDP_IDLE_TIMEOUT = 90.0
UDP_MAX_DATAGRAM = 65535
CONNECT_TIMEOUT = 30.0


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


class _TcpSide(asyncio.Protocol):
    """One end of a proxied TCP connection; `peer` is the other end."""

    def __init__(self, pair: _TcpPair) -> None:
        self.pair = pair
        self.transport: asyncio.Transport | None = None
        self.peer: _TcpSide | None = None
        self.eof = False
        self.gone = False
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=BUFFER_SIZE)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        if self.peer.transport is None:
            # The client spoke before the backend connection is made: keep this much, read no
            # more until then. (Pausing in connection_made does not hold on Python 3.11.)
            self.early.append(data)
            assert self.transport is not None
            self.transport.pause_reading()
            return
        self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            if peer.eof:
                self.pair.close()
                return False
            peer.transport.write_eof()  # sent once the buffered data is out
        return True  # keep the other direction open

    def connection_lost(self, exc: Exception | None) -> None:
        self.pair.lost(self, exc)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _ClientSide(_TcpSide):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.pair.client_connected()


class _TcpPair:
    """A client connection and its backend connection."""

    def __init__(self, proxy: PortProxy) -> None:
        self.proxy = proxy
        self.client: _TcpSide = _ClientSide(self)
        self.backend = _TcpSide(self)
        self.client.peer = self.backend
        self.backend.peer = self.client
        self.connecting: asyncio.Task[None] | None = None
        self.done = False

    def client_connected(self) -> None:
        self.proxy._pairs.add(self)
        self.connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.create_connection(lambda: self.backend, self.proxy.container_ip, self.proxy.container_port)
        except (OSError, TimeoutError) as exc:
            log.debug("%s: cannot reach the container: %s", self.proxy, exc)
            self.abort()
            return
        finally:
            self.connecting = None
        if self.done:
            self.abort()  # the client went away meanwhile
            return
        client, backend = self.client.transport, self.backend.transport
        assert client is not None and backend is not None
        for data in self.client.early:
            backend.write(data)
        self.client.early.clear()
        if self.client.eof:
            backend.write_eof()
        client.resume_reading()

    def close(self) -> None:
        """Both directions finished: close both sides once their buffers are sent."""
        for side in (self.client, self.backend):
            if side.transport is not None:
                side.transport.close()

    def abort(self) -> None:
        self.done = True
        for side in (self.client, self.backend):
            if side.transport is not None:
                side.transport.abort()
        self.proxy._pairs.discard(self)

    def lost(self, side: _TcpSide, exc: Exception | None) -> None:
        peer = side.peer
        assert peer is not None
        side.gone = True
        self.done = True
        if peer.transport is not None and not peer.transport.is_closing():
            if exc is not None:
                peer.transport.abort()
            else:
                peer.transport.close()
        if self.connecting is None and all(s.gone or s.transport is None for s in (self.client, self.backend)):
            self.proxy._pairs.discard(self)


class _UdpFlow:
    """The traffic of one client address: a connected socket towards the container."""

    def __init__(self, frontend: _UdpFrontend, client: Any) -> None:
        self.frontend = frontend
        self.client = client
        proxy = frontend.proxy
        self.sock = socket.socket(_family(proxy.container_ip), socket.SOCK_DGRAM)
        try:
            self.sock.setblocking(False)
            self.sock.connect((proxy.container_ip, proxy.container_port))
        except OSError:
            self.sock.close()
            raise
        self.last = time.monotonic()
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self.timer = self.loop.call_later(proxy.udp_idle_timeout, self._check_idle)

    def send(self, data: bytes) -> None:
        self.last = time.monotonic()
        try:
            self.sock.send(data)
        except (BlockingIOError, ConnectionRefusedError):
            pass  # a full buffer or an earlier ICMP error: the datagram is lost, as UDP allows
        except OSError as exc:
            log.debug("proxy %s: send to container failed: %s", self.frontend.proxy, exc)

    def _readable(self) -> None:
        transport = self.frontend.transport
        for _ in range(64):  # bounded, so one busy flow cannot starve the loop
            try:
                data = self.sock.recv(UDP_MAX_DATAGRAM)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                continue  # the container's port is closed; nothing to relay
            except OSError:
                self.close()
                return
            self.last = time.monotonic()
            if transport is not None and not transport.is_closing():
                transport.sendto(data, self.client)

    def _check_idle(self) -> None:
        idle = time.monotonic() - self.last
        timeout = self.frontend.proxy.udp_idle_timeout
        if idle >= timeout:
            self.close()
        else:
            self.timer = self.loop.call_later(timeout - idle, self._check_idle)

    def close(self) -> None:
        self.timer.cancel()
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
        if self.frontend.flows.get(self.client) is self:
            del self.frontend.flows[self.client]


class _UdpFrontend(asyncio.DatagramProtocol):
    def __init__(self, proxy: PortProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.DatagramTransport | None = None
        self.flows: dict[Any, _UdpFlow] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        flow = self.flows.get(addr)
        if flow is None:
            try:
                flow = _UdpFlow(self, addr)
            except OSError as exc:
                log.debug("proxy %s: cannot open a flow for %s: %s", self.proxy, addr, exc)
                return
            self.flows[addr] = flow
        flow.send(data)

    def error_received(self, exc: Exception) -> None:
        log.debug("proxy %s: %s", self.proxy, exc)

    def close(self) -> None:
        for flow in list(self.flows.values()):
            flow.close()
        if self.transport is not None:
            self.transport.close()


class PortProxy:
    """Forward host_ip:host_port to container_ip:container_port for the given protocols
    ("tcp", "udp" or both). host_port 0 picks a free port; `ports` tells what was bound."""

    def __init__(
        self,
        host_ip: str,
        host_port: int,
        container_ip: str,
        container_port: int,
        protocols: Iterable[str] = ("tcp",),
        *,
        udp_idle_timeout: float = UDP_IDLE_TIMEOUT,
    ) -> None:
        self.protocols = tuple(dict.fromkeys(p.lower() for p in protocols))
        unknown = set(self.protocols) - {"tcp", "udp"}
        if unknown or not self.protocols:
            raise ValueError(f"port proxy protocols must be tcp and/or udp, not {sorted(unknown) or 'none'}")
        self.host_ip = host_ip
        self.host_port = host_port
        self.container_ip = container_ip
        self.container_port = container_port
        self.udp_idle_timeout = udp_idle_timeout
        self.ports: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._udp: _UdpFrontend | None = None
        self._pairs: set[_TcpPair] = set()

    def __repr__(self) -> str:
        return (f"PortProxy({'/'.join(self.protocols)} {self.host_ip}:{self.host_port}"
                f" -> {self.container_ip}:{self.container_port})")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        port = self.host_port
        try:
            if "tcp" in self.protocols:
                self._server = await loop.create_server(self._accept, self.host_ip, port, reuse_address=True,
                                                        family=_family(self.host_ip))
                port = self._server.sockets[0].getsockname()[1]
                self.ports["tcp"] = port
            if "udp" in self.protocols:
                transport, protocol = await loop.create_datagram_endpoint(lambda: _UdpFrontend(self),
                                                                          local_addr=(self.host_ip, port),
                                                                          family=_family(self.host_ip))
                protocol.transport = transport
                self._udp = protocol
                self.ports["udp"] = transport.get_extra_info("sockname")[1]
        except BaseException:
            await self.close()
            raise

    def _accept(self) -> _TcpSide:
        return _TcpPair(self).client

    async def close(self) -> None:
        """Stop listening, reset every proxied connection, drop every UDP flow."""
        if self._server is not None:
            self._server.close()
        pairs = list(self._pairs)
        for pair in pairs:
            pair.abort()
        connecting = [p.connecting for p in pairs if p.connecting is not None and not p.connecting.done()]
        for task in connecting:
            task.cancel()
        await asyncio.gather(*connecting, return_exceptions=True)
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        await asyncio.sleep(0)  # let the aborted transports run connection_lost and release sockets
