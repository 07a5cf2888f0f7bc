"""Hijacked connections (attach, exec start): a 101 UPGRADED response, then raw bytes both ways.

aiohttp would hand the bytes after the 101 to its HTTP parser: the connection's protocol is
replaced with `RawProtocol` (see /work/shared/LIBRARIES.md). The client's half-close (EOF on the
socket) is honoured: it closes the container's stdin, and the output keeps flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from dockyard.errors import InvalidArgument

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


DETACHED = "detached"


async def feed_stdin(client_in: asyncio.StreamReader, container_in: Any, *, close_on_eof: bool = True,
                     detach_keys: bytes = b"") -> str | None:
    """Copy the client's bytes to the container's stdin; the client's EOF closes it. When the
    client types the detach keys, they are not passed on and DETACHED is returned."""
    matched = b""
    try:
        while True:
            data = await client_in.read(65536)
            if not data:
                break
            if detach_keys:
                forward = bytearray()
                for byte in data:
                    candidate = matched + bytes([byte])
                    if detach_keys.startswith(candidate):
                        matched = candidate
                        if matched == detach_keys:
                            if forward:
                                container_in.write(bytes(forward))
                                await container_in.drain()
                            return DETACHED
                    else:
                        forward += candidate  # not the sequence after all: pass it all on
                        matched = b""
                data = bytes(forward)
                if not data:
                    continue
            container_in.write(data)
            await container_in.drain()
    except (ConnectionError, RuntimeError):
        return None
    if close_on_eof:
        with contextlib.suppress(Exception):
            if container_in.can_write_eof():
                container_in.write_eof()


def _transformed(source: asyncio.StreamReader,
                 chunks: Callable[[asyncio.StreamReader], AsyncIterator[bytes]], first: bytes = b"") -> asyncio.StreamReader:
    """A new reader fed by a task with what `chunks(source)` yields (after `first`), then EOF."""
    out = asyncio.StreamReader()
    if first:
        out.feed_data(first)

    async def copy() -> None:
        async for data in chunks(source):
            out.feed_data(data)
        out.feed_eof()

    out._dockyard_task = asyncio.get_running_loop().create_task(copy())  # type: ignore[attr-defined]
    return out


async def _raw_chunks(source: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while data := await source.read(65536):
        yield data


async def _stdout_frames(source: asyncio.StreamReader) -> AsyncIterator[bytes]:
    async for data in _raw_chunks(source):
        yield bytes([1, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


async def _frame_payloads(source: asyncio.StreamReader) -> AsyncIterator[bytes]:
    try:
        while True:
            header = await source.readexactly(8)
            yield await source.readexactly(int.from_bytes(header[4:], "big"))
    except asyncio.IncompleteReadError:
        return


def framed_as_stdout(source: asyncio.StreamReader) -> asyncio.StreamReader:
    """A tty's raw output as Docker's multiplexed stdout frames (a client that asked for framing)."""
    return _transformed(source, _stdout_frames)


def unframed(source: asyncio.StreamReader) -> asyncio.StreamReader:
    """Multiplexed frames as raw bytes (a client that asked for a raw stream)."""
    return _transformed(source, _frame_payloads)


def prefixed(first: bytes, source: asyncio.StreamReader) -> asyncio.StreamReader:
    """`first`, then whatever `source` gives."""
    return _transformed(source, _raw_chunks, first)


DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q


def parse_detach_keys(text: str | None) -> bytes:
    """Docker's detach keys ("ctrl-p,ctrl-q", "a,ctrl-@"...) as the bytes a terminal sends."""
    if not text:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for part in text.split(","):
        part = part.strip()
        if len(part) == 1:
            out.append(ord(part))
        elif part.startswith("ctrl-") and len(part) == 6:
            key = part[5]
            if "a" <= key <= "z":
                out.append(ord(key) - ord("a") + 1)
            elif key in "@[\\]^_":
                out.append(ord(key) - 64)
            else:
                raise InvalidArgument(f"invalid detach keys {text!r}")
        else:
            raise InvalidArgument(f"invalid detach keys {text!r}")
    return bytes(out)


# docker-py reads a hijacked stream from the raw socket under the buffered reader that parsed
# the 101 response: output that arrives together with the response headers sits in that buffer
# and is lost to it. Output is held back this long after the 101 for docker-py clients only.
PYTHON_CLIENT_PAUSE = 0.05


async def session(request: web.Request, content_type: str, container_out: asyncio.StreamReader, container_in: Any,
                  stdin: bool, before_close: Callable[[], Awaitable[None]] | None = None,
                  detach_keys: bytes = b"") -> web.StreamResponse:
    """A whole hijacked session: stdin in, output out, until the output ends. Returns the 101 response.

    A client that did not ask to upgrade gets the output as an ordinary (chunked) 200 response.
    `before_close` runs after the output ended and before the connection closes (exec: so that
    the exit code is known when the client asks for it next).
    """
    if "upgrade" not in request.headers.get("Connection", "").lower():
        return await _plain(request, content_type, container_out, container_in)
    response, client_in, transport, protocol = await hijack(request, content_type)
    if request.headers.get("User-Agent", "").startswith("docker-sdk-python"):
        await asyncio.sleep(PYTHON_CLIENT_PAUSE)
    loop = asyncio.get_running_loop()
    feeder = loop.create_task(feed_stdin(client_in, container_in, detach_keys=detach_keys)) if stdin else None
    try:
        pumping = loop.create_task(pump(container_out, transport, protocol))
        waiting = {pumping} | ({feeder} if feeder is not None else set())
        while pumping in waiting:
            done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if feeder in done and feeder.result() == DETACHED:
                pumping.cancel()  # the client detached: the connection ends, the container runs on
                with contextlib.suppress(asyncio.CancelledError):
                    await pumping
                break
        else:
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
