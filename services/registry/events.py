"""The change feed: every replica follows the shared event log and fans it out to watchers.

Writers take revisions from one counter row under its lock, so revisions commit in order
and polling `revision > last` never skips a change, whichever replica wrote it. A local
commit pokes the poller so local watchers hear at once; others within `poll_interval`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from berth.client.errors import Aborted
from berth.v1 import registry_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.registry.store import repository as repo
from services.registry.store.models import Event

log = logging.getLogger(__name__)

Listener = Callable[[registry_pb2.WatchServicesResponse], None]


def decode(event: Event) -> registry_pb2.WatchServicesResponse:
    response = registry_pb2.WatchServicesResponse(type=event.type, revision=event.revision)
    if event.kind == "service":
        response.service.ParseFromString(event.payload)
    else:
        response.aggregate.ParseFromString(event.payload)
    return response


@dataclass(eq=False)
class Subscription:
    """A watcher's queue; `from_revision` is where the feed stood when it subscribed."""

    from_revision: int
    queue: asyncio.Queue[registry_pb2.WatchServicesResponse] = field(default_factory=asyncio.Queue)
    overflowed: bool = False


class EventFeed:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        poll_interval_s: float = 0.25,
        queue_limit: int = 10_000,
        retention: int = 100_000,
    ) -> None:
        self._sessions = sessions
        self._poll_interval_s = poll_interval_s
        self._queue_limit = queue_limit
        self._retention = retention
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Listener] = []
        self._poke = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.position = 0

    async def start(self) -> None:
        async with self._sessions() as session:
            self.position, _ = await repo.revision_state(session)
        self._tasks = [
            asyncio.create_task(self._follow(), name="event-feed"),
            asyncio.create_task(self._compact_forever(), name="event-compactor"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def poke(self) -> None:
        self._poke.set()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def subscribe(self) -> Subscription:
        sub = Subscription(self.position)
        self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)

    async def _follow(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self._poll_interval_s)
            self._poke.clear()
            try:
                await self.catch_up()
            except Exception as exc:  # the database went away: keep following
                log.warning("cannot read the event log: %s", exc)
                await asyncio.sleep(self._poll_interval_s)

    async def catch_up(self) -> None:
        while True:
            async with self._sessions() as session:
                rows = await repo.events_after(session, self.position, 1000)
            for row in rows:
                self._deliver(decode(row))
                self.position = row.revision
            if len(rows) < 1000:
                return

    def _deliver(self, event: registry_pb2.WatchServicesResponse) -> None:
        for listener in self._listeners:
            listener(event)
        for sub in list(self._subscriptions):
            if sub.queue.qsize() >= self._queue_limit:
                sub.overflowed = True  # the watcher learns it on its next read
                self._subscriptions.discard(sub)
            else:
                sub.queue.put_nowait(event)

    async def _compact_forever(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                async with self._sessions() as session, session.begin():
                    await repo.compact(session, self._retention)
            except Exception as exc:
                log.warning("cannot compact the event log: %s", exc)

    async def replay(
        self, after: int, up_to: int
    ) -> AsyncIterator[registry_pb2.WatchServicesResponse]:
        """Stored events in (after, up_to], oldest first."""
        while after < up_to:
            async with self._sessions() as session:
                rows = await repo.events_after(session, after, 1000)
            if not rows:
                return
            for row in rows:
                if row.revision > up_to:
                    return
                yield decode(row)
                after = row.revision

    @staticmethod
    async def live(
        sub: Subscription, after: int
    ) -> AsyncIterator[registry_pb2.WatchServicesResponse]:
        """Events from a subscription after revision `after`, until the watcher falls behind."""
        while True:
            if sub.overflowed and sub.queue.empty():
                raise Aborted(
                    f"this watch fell more than the queue limit behind; watch again from revision {after}",
                    reason="WATCH_TOO_SLOW",
                    metadata={"revision": str(after)},
                )
            try:
                event = await asyncio.wait_for(sub.queue.get(), timeout=5)
            except TimeoutError:
                continue
            if event.revision > after:
                after = event.revision
                yield event
