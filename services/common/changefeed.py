"""A service's change log and the feed that fans it out to watchers, across replicas.

Writers take revisions from one counter row under its lock, so revisions commit in order
and polling `revision > last` never skips a change, whichever replica wrote it. A local
commit pokes the poller so local watchers hear at once; others within `poll_interval`.
A watch is a listing at one revision, SYNCED, then the changes after it; or, resuming,
the stored changes after a revision, then live ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from berth.client.errors import Aborted, FailedPrecondition, InvalidArgument
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common import db
from services.common.batch_sql import BatchStatement
from services.common.store import EventColumns
from services.common.streams import until_stopped
from services.common.supervise import supervised

log = logging.getLogger(__name__)


MAX_LISTING_BATCH = 1000
T = TypeVar("T")


def listing_batch(value: int) -> int:
    """A watch request's `listing_batch`: how many objects per listing message (0: one
    per event, as before batches existed)."""
    if not 0 <= value <= MAX_LISTING_BATCH:
        raise InvalidArgument.field(
            "listing_batch", f"must be between 0 and {MAX_LISTING_BATCH} (got {value})"
        )
    return value


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Revisioned(Protocol):
    revision: int


E = TypeVar("E", bound=Revisioned)

BATCH = 1000


class ChangeLog:
    """The SQL of one service's counter and event tables (mapped classes given by the service)."""

    def __init__(self, counter: type[Any], event: type[Any]) -> None:
        self.counter = counter
        self.event = event
        names = ["revision", "type", "kind", "object_uuid", "payload", "created_at"]
        self._insert = BatchStatement(
            insert(event).values({name: bindparam(name) for name in names}), names
        )

    async def add(
        self,
        session: AsyncSession,
        type_: int,
        kind: str,
        object_uuid: str,
        payload: bytes,
        now: datetime,
    ) -> int:
        return await self.add_many(session, [(type_, kind, object_uuid, payload)], now)

    async def add_many(
        self, session: AsyncSession, events: Sequence[tuple[int, str, str, bytes]], now: datetime
    ) -> int:
        """Record (type, kind, object uuid, payload) events under consecutive revisions and
        return the last. Takes the counter's row lock until the transaction ends: call it
        last, just before commit."""
        counter = self.counter
        await session.execute(
            update(counter).where(counter.id == 1).values(revision=counter.revision + len(events))
        )
        query = select(counter.revision).where(counter.id == 1)
        last = int((await session.execute(query)).scalar_one())
        first = last - len(events) + 1
        await self._insert.execute(
            session,
            [
                (first + i, type_, kind, uuid, payload, now)
                for i, (type_, kind, uuid, payload) in enumerate(events)
            ],
        )
        return last

    async def state(self, session: AsyncSession, *, lock: bool = False) -> tuple[int, int]:
        """(current revision, compacted revision); `lock` holds writers off for a listing."""
        counter = self.counter
        query = select(counter.revision, counter.compacted).where(counter.id == 1)
        if lock and session.get_bind().dialect.name != "sqlite":
            query = query.with_for_update(read=True)
        row = (await session.execute(query)).one()
        return int(row.revision), int(row.compacted)

    async def after(self, session: AsyncSession, revision: int, limit: int) -> Sequence[Any]:
        event = self.event
        query = select(event).where(event.revision > revision).order_by(event.revision)
        return (await session.execute(query.limit(limit))).scalars().all()

    async def compact(self, session: AsyncSession, keep: int) -> int:
        """Drop all but the newest `keep` events; returns the new compacted revision."""
        current, compacted = await self.state(session)
        target = current - keep
        if target <= compacted:
            return compacted
        await session.execute(delete(self.event).where(self.event.revision <= target))
        await session.execute(
            update(self.counter).where(self.counter.id == 1).values(compacted=target)
        )
        return target


@dataclass(eq=False)
class Subscription(Generic[E]):
    """A watcher's queue; `from_revision` is where the feed stood when it subscribed."""

    from_revision: int
    queue: asyncio.Queue[E] = field(default_factory=asyncio.Queue)
    overflowed: bool = False


class EventFeed(Generic[E]):
    """Follows the shared change log and delivers decoded events to listeners and watchers."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        changelog: ChangeLog,
        decode: Callable[[EventColumns], E],
        *,
        poll_interval_s: float = 0.25,
        queue_limit: int = 10_000,
        retention: int = 100_000,
    ) -> None:
        self._sessions = sessions
        self.changelog = changelog
        self._decode = decode
        self._poll_interval_s = poll_interval_s
        self._queue_limit = queue_limit
        self._retention = retention
        self._subscriptions: set[Subscription[E]] = set()
        self._listeners: list[Callable[[E], None]] = []
        self._poke = asyncio.Event()
        self._closing = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.position = 0

    async def start(self) -> None:
        self.position, _ = await self._state()
        self._tasks = [
            supervised("event-feed", self._follow),
            supervised("event-compactor", self._compact_forever),
        ]

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Let the loops finish the query in hand and end. Cancelling one mid-query could
        leave the driver closing its connection forever (seen with aiosqlite: a test
        teardown hung in `_terminate_graceful_close`); a loop stuck past `timeout_s` is
        cut off."""
        self._closing.set()
        self._poke.set()
        if not self._tasks:
            return
        _, stuck = await asyncio.wait(self._tasks, timeout=timeout_s)
        for task in stuck:
            log.warning("%s did not end within %.0f s; cancelling it", task.get_name(), timeout_s)
            task.cancel()
        if stuck:
            await asyncio.wait(stuck, timeout=timeout_s)

    def poke(self) -> None:
        self._poke.set()

    def add_listener(self, listener: Callable[[E], None]) -> None:
        self._listeners.append(listener)

    def subscribe(self) -> Subscription[E]:
        sub: Subscription[E] = Subscription(self.position)
        self._subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription[E]) -> None:
        self._subscriptions.discard(sub)

    async def _pause(self, seconds: float, wake: asyncio.Event) -> bool:
        """Wait up to `seconds` for `wake`; False once the feed is closing."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wake.wait()
        return not self._closing.is_set()

    async def _follow(self) -> None:
        while await self._pause(self._poll_interval_s, self._poke):
            self._poke.clear()
            try:
                await self.catch_up()
            except Exception as exc:  # the database went away: keep following
                log.warning("cannot read the event log: %s", exc or type(exc).__name__)
                if not await self._pause(self._poll_interval_s, self._closing):
                    return

    async def catch_up(self) -> None:
        if not self._subscriptions and not self._listeners:
            # Nobody to deliver to: keep the position (where a new watcher's replay ends)
            # without reading and decoding the events just written.
            current, _ = await self._state()
            if not self._subscriptions and not self._listeners:  # still nobody: jump
                self.position = current
                return
        while True:
            rows = await self._rows_after(self.position)
            for row in rows:
                self._deliver(self._decode(row))
                self.position = row.revision
            if len(rows) < BATCH:
                return

    def _deliver(self, event: E) -> None:
        for listener in self._listeners:
            listener(event)
        for sub in list(self._subscriptions):
            if sub.queue.qsize() >= self._queue_limit:
                sub.overflowed = True  # the watcher learns it on its next read
                self._subscriptions.discard(sub)
            else:
                sub.queue.put_nowait(event)

    async def _compact_forever(self) -> None:
        while await self._pause(60, self._closing):
            try:
                async with self._sessions() as session, session.begin():
                    await self.changelog.compact(session, self._retention)
            except Exception as exc:
                log.warning("cannot compact the event log: %s", exc)

    async def replay(self, after: int, up_to: int) -> AsyncIterator[E]:
        """Stored events in (after, up_to], oldest first."""
        while after < up_to:
            rows = await db.uncancelled(self._rows_after(after))
            if not rows:
                return
            for row in rows:
                if row.revision > up_to:
                    return
                yield self._decode(row)
                after = row.revision

    @staticmethod
    async def live(sub: Subscription[E], after: int) -> AsyncIterator[E]:
        """Events from a subscription after revision `after`, until the watcher falls behind."""
        while True:
            if sub.overflowed and sub.queue.empty():
                raise Aborted(
                    f"this watch fell more than the queue limit behind; watch again from revision {after}",
                    reason="WATCH_TOO_SLOW",
                    metadata={"revision": str(after)},
                )
            try:
                async with asyncio.timeout(5):
                    event = await sub.queue.get()
            except TimeoutError:
                continue
            if event.revision > after:
                after = event.revision
                yield event

    async def watch(
        self,
        start_revision: int,
        listing: Callable[[], AsyncIterator[E]],
        stopping: asyncio.Event,
    ) -> AsyncIterator[E]:
        """A watch stream: `listing()` (ending with SYNCED) when starting from 0, else the
        stored changes after `start_revision`; then live changes until the server stops."""
        if start_revision < 0:
            raise InvalidArgument.field("start_revision", "must not be negative")
        sub = self.subscribe()
        try:
            after = start_revision
            if start_revision == 0:
                source: AsyncIterator[E] = listing()
            else:
                await self._check_resumable(start_revision)
                source = self.replay(start_revision, sub.from_revision)
            async for event in source:
                after = event.revision
                yield event
            async for event in until_stopped(stopping, self.live(sub, after)):
                yield event
        finally:
            self.unsubscribe(sub)

    async def _rows_after(self, revision: int) -> Sequence[Any]:
        async with self._sessions() as session:
            return await self.changelog.after(session, revision, BATCH)

    async def _state(self) -> tuple[int, int]:
        async with self._sessions() as session:
            return await self.changelog.state(session)

    async def _check_resumable(self, after: int) -> None:
        current, compacted = await db.uncancelled(self._state())
        if after < compacted:
            raise FailedPrecondition(
                f"revision {after} is older than the retained history (from {compacted + 1}); "
                "watch again from 0 to list everything",
                reason="REVISION_TOO_OLD",
                metadata={"compacted_revision": str(compacted)},
            )
        if after > current:
            raise InvalidArgument.field(
                "start_revision", f"is ahead of this service (at {current})"
            )
