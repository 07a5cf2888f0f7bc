"""Request and response bodies as blocking file objects, for services that work in threads.

`pipe_out` streams what a producer writes to a file object (e.g. a tar made in a thread) as the
response body; `pipe_in` hands the request body to a consumer as a readable file object, so
that large uploads (image archives, `docker cp` tars) never sit in memory whole.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import BinaryIO, TypeVar

from aiohttp import web

T = TypeVar("T")
log = logging.getLogger("dockyard.daemon.api")
CHUNK = 1 << 20


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


async def pipe_in(request: web.Request, consumer: Callable[[BinaryIO], Awaitable[T]]) -> T:
    """Run `consumer(body)` with the request body readable from a pipe; its result."""
    loop = asyncio.get_running_loop()
    r, w = os.pipe2(os.O_CLOEXEC)
    source = os.fdopen(r, "rb")

    async def consume() -> T:
        try:
            return await consumer(source)
        finally:
            source.close()

    task = loop.create_task(consume())
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            if task.done():
                break
            try:
                await loop.run_in_executor(None, _write_all, w, chunk)
            except BrokenPipeError:
                break  # the consumer stopped reading: its result (or error) says why
    finally:
        os.close(w)
    return await task


async def pipe_out(request: web.Request, producer: Callable[[BinaryIO], Awaitable[object]],
                   headers: dict[str, str]) -> web.StreamResponse:
    """Stream what `producer(out)` writes. An error before the first byte becomes the error
    response; after it, the connection is cut (the client sees a truncated body)."""
    loop = asyncio.get_running_loop()
    r, w = os.pipe2(os.O_CLOEXEC)
    sink = os.fdopen(w, "wb")

    async def produce() -> None:
        try:
            await producer(sink)
        finally:
            await loop.run_in_executor(None, sink.close)

    task = loop.create_task(produce())
    with os.fdopen(r, "rb") as source:
        chunk = await loop.run_in_executor(None, source.read1, CHUNK)
        if not chunk:
            await task  # raises the producer's error, if any, before anything was sent
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        try:
            while chunk:
                await response.write(chunk)
                chunk = await loop.run_in_executor(None, source.read1, CHUNK)
        except BaseException:
            source.close()  # the producer then fails with EPIPE and ends
            await asyncio.gather(task, return_exceptions=True)
            raise
    try:
        await task
    except Exception as e:  # noqa: BLE001 - too late for an error response: cut the stream
        log.error("%s %s: failed after the response started: %s", request.method, request.path, e)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


class ProgressRelay:
    """JSON progress messages from a task (possibly in another thread) to a streamed response."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.updates: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        self._head: dict[str, object] | None = None

    def __call__(self, message: dict[str, object]) -> None:
        """The progress callback: safe to call from any thread."""
        self.loop.call_soon_threadsafe(self.updates.put_nowait, message)

    async def first(self, task: asyncio.Task[T]) -> None:
        """Wait for the first message or the task's end; the task's error if it failed before any."""
        waiting = self.loop.create_task(self.updates.get())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if waiting.done():
            self._head = waiting.result()  # relay() writes it first
        else:
            waiting.cancel()
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def relay(self, response: web.StreamResponse, task: asyncio.Task[T]) -> None:
        """Write every message until the task is done (the task's result is then the caller's)."""
        if self._head is not None:
            await response.write(progress_line(self._head))
            self._head = None
        waiting = self.loop.create_task(self.updates.get())
        while True:
            if waiting.done():
                await response.write(progress_line(waiting.result()))
                waiting = self.loop.create_task(self.updates.get())
                continue
            if task.done():
                waiting.cancel()
                while not self.updates.empty():
                    await response.write(progress_line(self.updates.get_nowait()))
                return
            await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)


def progress_line(message: dict[str, object]) -> bytes:
    return json.dumps(message).encode() + b"\r\n"
