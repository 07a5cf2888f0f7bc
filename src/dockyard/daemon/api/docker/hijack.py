"""Hijacked connections (attach, exec start): a 101 UPGRADED response, then raw bytes both ways.

aiohttp would hand the bytes after the 101 to its HTTP parser: the connection's protocol is
replaced with `RawProtocol` (see /work/shared/LIBRARIES.md). The client's half-close (EOF on the
socket) is honoured: it closes the container's stdin, and the output keeps flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"


class RawProtocol(asyncio.Protocol):
    """Feeds the client's bytes to a StreamReader once the connection is hijacked."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.reader.feed_data(data)

    def eof_received(self) -> bool:
        self.reader.feed_eof()
        return True  # keep the transport open for writing: the client only closed its side

    def connection_lost(self, exc: Exception | None) -> None:
        self.reader.feed_eof()
        if not self.closed.done():
            self.closed.set_result(None)


async def _plain(request: web.Request, content_type: str, container_out: asyncio.StreamReader,
                 container_in: Any) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": content_type})
    await response.prepare(request)
    try:
        while data := await container_out.read(65536):
            await response.write(data)
    finally:
        with contextlib.suppress(Exception):
            container_in.close()
    await response.write_eof()
    return response


async def hijack(request: web.Request, content_type: str) -> tuple[web.StreamResponse, asyncio.StreamReader, asyncio.Transport, RawProtocol]:
    """Answer 101 UPGRADED and take over the connection."""
    response = web.StreamResponse(status=101, reason="UPGRADED",
                                  headers={"Content-Type": content_type, "Connection": "Upgrade", "Upgrade": "tcp"})
    response.force_close()
    await response.prepare(request)
    transport = request.transport
    assert transport is not None
    reader = asyncio.StreamReader()
    protocol = RawProtocol(reader)
    # Bytes the client sent right after its request (already read by aiohttp) are not lost:
    leftover = _buffered(request)
    if leftover:
        reader.feed_data(leftover)
    transport.set_protocol(protocol)
    transport.resume_reading()
    return response, reader, transport, protocol  # type: ignore[return-value]


def _buffered(request: web.Request) -> bytes:
    content = request.content
    with contextlib.suppress(Exception):
        data: Any = content.read_nowait(-1)
        return bytes(data)
    return b""


async def pump(container_out: asyncio.StreamReader, client: asyncio.Transport, protocol: RawProtocol) -> None:
    """Copy the container's output to the client until either side ends."""
    while True:
        data = await container_out.read(65536)
        if not data:
            return
        if client.is_closing():
            return
        client.write(data)
        if protocol.closed.done():
            return


async def feed_stdin(client_in: asyncio.StreamReader, container_in: Any, *, close_on_eof: bool = True) -> None:
    """Copy the client's bytes to the container's stdin; the client's EOF closes it."""
    try:
        while True:
            data = await client_in.read(65536)
            if not data:
                break
            container_in.write(data)
            await container_in.drain()
    except (ConnectionError, RuntimeError):
        return
    if close_on_eof:
        with contextlib.suppress(Exception):
            if container_in.can_write_eof():
                container_in.write_eof()


async def session(request: web.Request, content_type: str, container_out: asyncio.StreamReader, container_in: Any,
                  stdin: bool, before_close: Callable[[], Awaitable[None]] | None = None) -> web.StreamResponse:
    """A whole hijacked session: stdin in, output out, until the output ends. Returns the 101 response.

    A client that did not ask to upgrade gets the output as an ordinary (chunked) 200 response.
    `before_close` runs after the output ended and before the connection closes (exec: so that
    the exit code is known when the client asks for it next).
    """
    if "upgrade" not in request.headers.get("Connection", "").lower():
        return await _plain(request, content_type, container_out, container_in)
    response, client_in, transport, protocol = await hijack(request, content_type)
    feeder = asyncio.get_running_loop().create_task(feed_stdin(client_in, container_in)) if stdin else None
    try:
        await pump(container_out, transport, protocol)
        if before_close is not None:
            await before_close()
    finally:
        if feeder is not None:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder
        with contextlib.suppress(Exception):
            container_in.close()
        with contextlib.suppress(Exception):
            if transport.can_write_eof():
                transport.write_eof()
        transport.close()
    return response
