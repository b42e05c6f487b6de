"""Heartbeats by group commit: calls wait for the next batch, one UPDATE stores a whole batch.

A heartbeat is stamped with the registry's clock when it arrives, not when its batch is
written, so a slow database delays answers but never ages anyone's `last_seen_up`. While
the database cannot be written, callers get UNAVAILABLE and the liveness rules stop
declaring services down (see liveness.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from berth.client.errors import BerthError, NotFound, Unavailable
from berth.v1 import common_pb2, registry_pb2
from google.protobuf.duration_pb2 import Duration
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.common import auth
from services.common.supervise import stop_tasks, supervised
from services.registry.liveness import Liveness
from services.registry.metrics import HEARTBEATS
from services.registry.store import repository as repo

log = logging.getLogger(__name__)
_STORED = HEARTBEATS.labels("stored")  # looked up once: labels() cost ~5% of a busy registry


@dataclass
class Known:
    """What a heartbeat needs to know of its service, cached per replica."""

    id: int
    host: str
    report_count: int
    disabled: bool
    forced_down: bool


class HeartbeatBatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        liveness: Liveness,
        report_interval_s: float,
        max_batch: int = 5000,
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._liveness = liveness
        self._interval = Duration()
        self._interval.FromMilliseconds(int(report_interval_s * 1000))
        self._max_batch = max_batch
        self._known: dict[str, Known] = {}
        self._pending: dict[int, list] = {}
        # Arrival of the first beat of the pending batch and of the batch being written.
        self._pending_since: datetime | None = None
        self._writing_since: datetime | None = None
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = supervised("heartbeat-flusher", self._flush_forever)

    async def stop(self) -> None:
        await stop_tasks(self._task)
        if self._pending:
            await self._flush()

    async def beat(self, service_uuid: str) -> registry_pb2.HeartbeatResult:
        try:
            known = self._known.get(service_uuid) or await self._load(service_uuid)
            auth.require_host(known.host)
        except BerthError as exc:
            HEARTBEATS.labels(exc.reason.lower()).inc()  # refused: why
            raise
        now = self._liveness.clock()
        if self._pending_since is None:
            self._pending_since = now
            self._unstored_changed()
        entry = self._pending.setdefault(known.id, [0, now])
        entry[0] += 1
        entry[1] = now
        known.report_count += 1
        done = self._done
        self._wake.set()
        await asyncio.shield(done)
        result = registry_pb2.HeartbeatResult(
            service_uuid=service_uuid,
            report_count=known.report_count,
            disabled=known.disabled,
            forced_down=known.forced_down,
            report_interval=self._interval,
        )
        result.last_seen_up.FromDatetime(now)
        return result

    async def _load(self, service_uuid: str) -> Known:
        async with self._sessions() as session:
            row = await repo.service_by_uuid(session, service_uuid)
        if row is None:
            raise NotFound(
                f"no live service {service_uuid}: register it first (RegisterService)",
                reason="SERVICE_NOT_FOUND",
                metadata={"service_uuid": service_uuid},
            )
        known = Known(row.id, row.host, row.report_count, row.disabled, row.forced_down)
        self._known[service_uuid] = known
        return known

    def on_event(self, event: registry_pb2.WatchServicesResponse) -> None:
        """Keep the cache true to changes made through any replica."""
        if not event.HasField("service"):
            return
        svc = event.service
        if event.type == common_pb2.EVENT_TYPE_DELETED:
            self._known.pop(svc.uuid, None)
        elif (known := self._known.get(svc.uuid)) is not None:
            known.disabled, known.forced_down = svc.disabled, svc.forced_down

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    def _unstored_changed(self) -> None:
        """Tell liveness since when a received heartbeat waits to be stored (if one does)."""
        waiting = [t for t in (self._writing_since, self._pending_since) if t is not None]
        self._liveness.unstored_since = min(waiting, default=None)

    async def _flush(self) -> None:
        """Write everything pending in one transaction, then answer its callers."""
        batch, done = self._pending, self._done
        self._pending, self._done = {}, asyncio.get_running_loop().create_future()
        self._writing_since, self._pending_since = self._pending_since, None
        rows = [(service_id, n, seen) for service_id, (n, seen) in batch.items()]
        try:
            for start in range(0, len(rows), self._max_batch):
                async with self._engine.begin() as conn:
                    await repo.apply_heartbeats(conn, rows[start : start + self._max_batch])
        except Exception as exc:
            # Deaf first: the lost beats must never count as silence once forgotten.
            self._liveness.deaf()
            self._writing_since = None
            self._unstored_changed()
            log.warning("cannot store %d heartbeats: %s", len(rows), exc or type(exc).__name__)
            done.set_exception(
                Unavailable(
                    "the registry's database cannot store heartbeats now; retry shortly",
                    reason="DATABASE_UNAVAILABLE",
                )
            )
            done.exception()  # retrieved here so an unanswered batch logs nothing more
            return
        self._liveness.listening()
        self._writing_since = None
        self._unstored_changed()
        _STORED.inc(sum(n for _, n, _ in rows))  # once per batch: a counter takes a lock
        done.set_result(None)
