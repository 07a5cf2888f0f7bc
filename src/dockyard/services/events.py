"""The event log: what happened to containers and images, kept in memory and fanned out to watchers."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

KEEP = 1024  # events kept for `since` queries (dockerd keeps 256)


@dataclass(frozen=True)
class Event:
    type: str                      # container, image, network, volume, daemon
    action: str                    # create, start, die, destroy, tag, delete, ...
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    time_nano: int = 0


Filter = Callable[[Event], bool]


class EventService:
    def __init__(self, keep: int = KEEP) -> None:
        self._past: deque[Event] = deque(maxlen=keep)
        self._watchers: set[asyncio.Queue[Event]] = set()

    def publish(self, type: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> Event:
        event = Event(type, action, actor_id, dict(attributes or {}), time.time_ns())
        self._past.append(event)
        for queue in list(self._watchers):
            queue.put_nowait(event)
        return event

    def history(self, since_ns: int | None = None, until_ns: int | None = None, match: Filter | None = None) -> list[Event]:
        return [e for e in self._past
                if (since_ns is None or e.time_nano >= since_ns) and (until_ns is None or e.time_nano <= until_ns)
                and (match is None or match(e))]

    async def watch(self, since_ns: int | None = None, until_ns: int | None = None,
                    match: Filter | None = None) -> AsyncIterator[Event]:
        """Past events from `since`, then new ones as they happen until `until` (forever without one)."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            seen = 0
            if since_ns is not None:
                for event in self.history(since_ns, until_ns, match):
                    seen = max(seen, event.time_nano)
                    yield event
            while True:
                timeout = None
                if until_ns is not None:
                    timeout = (until_ns - time.time_ns()) / 1e9
                    if timeout <= 0:
                        return
                try:
                    event = await asyncio.wait_for(queue.get(), timeout)
                except asyncio.TimeoutError:
                    return
                if event.time_nano <= seen:
                    continue
                if until_ns is not None and event.time_nano > until_ns:
                    return
                if match is None or match(event):
                    yield event
        finally:
            self._watchers.discard(queue)
