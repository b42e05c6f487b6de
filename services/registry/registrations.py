"""RegisterService by group commit: registrations arriving while one transaction is being
written wait for the next, and each transaction stores a whole batch.

Every registration publishes an event, and an event takes the change log's counter row
until its transaction commits, so one registration per transaction admits one at a time
whatever the database: ~170-290/s measured on PostgreSQL, and a rack row of agents
starting at once ran into their deadlines. A batch takes the counter once.

Each registration is answered exactly as alone: the first of a (host, binary) creates the
row, a later one in the same batch waits for the next batch and restarts it. A row another
replica inserted meanwhile (IntegrityError) or a lost lock race retries the whole batch,
which then reads the winner's row.

A registration whose caller left (its deadline passed) before its batch began is dropped,
not written: under a cold start larger than the database keeps up with, agents retry after
their deadline, and writing what nobody waits for any more would only put their retries
further back (`berth_registrations_abandoned_total`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from berth.client.errors import FailedPrecondition
from berth.v1 import common_pb2, registry_pb2
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common import db
from services.registry.metrics import REGISTRATION_BATCH, REGISTRATIONS_ABANDONED
from services.registry.store import repository as repo
from services.registry.store.models import Service

log = logging.getLogger(__name__)

# Registrations per transaction: enough for a rack row starting at once, few enough that a
# batch's statements stay small.
MAX_BATCH = 500
ATTEMPTS = 5

Publish = Callable[
    [AsyncSession, Sequence[Service], Sequence[int]], Awaitable[list[registry_pb2.Service]]
]


@dataclass
class Registration:
    host: str
    binary: str
    topic: str
    endpoint: str
    build_version: str
    answer: asyncio.Future[tuple[registry_pb2.Service, bool]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    abandoned: bool = False  # its caller left before an answer

    @property
    def key(self) -> tuple[str, str]:
        return self.host, self.binary


class Registrations:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime],
        publish: Publish,
        committed: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._publish = publish  # events for rows, in the caller's transaction
        self._committed = committed  # tells the change feed to look
        self._queue: list[Registration] = []
        self._writer: asyncio.Task[None] | None = None

    async def register(self, registration: Registration) -> tuple[registry_pb2.Service, bool]:
        self._queue.append(registration)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queue(), name="registrations")
        # A batch being written goes on if this caller leaves: its other callers need it.
        try:
            return await asyncio.shield(registration.answer)
        except asyncio.CancelledError:
            registration.abandoned = True
            raise

    async def _write_queue(self) -> None:
        batch: list[Registration] = []
        try:
            while True:
                self._drop_abandoned()
                if not self._queue:
                    return
                batch, seen = [], set()
                for registration in self._queue:
                    if len(batch) < MAX_BATCH and registration.key not in seen:
                        seen.add(registration.key)
                        batch.append(registration)
                # A second registration of one service waits for the next batch (it
                # restarts the row the first creates): answers keep the order of calls.
                chosen = set(map(id, batch))
                self._queue = [r for r in self._queue if id(r) not in chosen]
                await self._write(batch)
        except BaseException as exc:
            # Stopped (or a bug): nobody may wait for an answer that will not come.
            for registration in batch + self._queue:
                if registration.answer.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    registration.answer.cancel()
                else:
                    registration.answer.set_exception(exc)
                    registration.answer.exception()
            self._queue = []
            raise

    def _drop_abandoned(self) -> None:
        left = [r for r in self._queue if r.abandoned]
        if left:
            self._queue = [r for r in self._queue if not r.abandoned]
            for registration in left:
                registration.answer.cancel()
            REGISTRATIONS_ABANDONED.inc(len(left))
            log.info("dropped %d registrations whose callers left before their turn", len(left))

    async def _write(self, batch: list[Registration]) -> None:
        failure: BaseException = FailedPrecondition(
            "could not register: the service's row kept changing under other registrations; retry"
        )
        for _ in range(ATTEMPTS):
            try:
                answers = await db.uncancelled(self._store(batch))
            except DBAPIError as exc:
                if not (isinstance(exc, IntegrityError) or db.is_retryable(exc)):
                    failure = exc
                    break
                log.info(
                    "lost a registration race; reading the winners' rows",
                    extra={"size": len(batch)},
                )
                continue
            except Exception as exc:
                failure = exc
                break
            self._committed()
            REGISTRATION_BATCH.observe(len(batch))
            for registration, answer in zip(batch, answers, strict=True):
                if not registration.answer.done():
                    registration.answer.set_result(answer)
            return
        for registration in batch:
            if not registration.answer.done():
                registration.answer.set_exception(failure)
                registration.answer.exception()  # a caller that left has nobody to tell

    async def _store(self, batch: list[Registration]) -> list[tuple[registry_pb2.Service, bool]]:
        now = self._clock()
        keys = [r.key for r in batch]
        async with self._sessions() as session, session.begin():
            found = await repo.services_by_keys(session, keys, for_update=True)
            new = {
                r.key: dict(
                    uuid=str(uuidlib.uuid4()), host=r.host, binary=r.binary, topic=r.topic,
                    endpoint=r.endpoint, build_version=r.build_version, report_count=0,
                    disabled=False, forced_down=False, last_seen_up=now, reported_up=True,
                    version=1, created_at=now, updated_at=now, deleted=0,
                )
                for r in batch
                if r.key not in found
            }  # fmt: skip
            if new:
                # Another replica may insert some of these first: theirs are then restarted.
                await repo.insert_services_if_absent(session, list(new.values()))
                found = await repo.services_by_keys(session, keys, for_update=True)
            rows: list[Service] = []
            created: list[bool] = []
            for registration in batch:
                row = found[registration.key]
                inserted = registration.key in new and new[registration.key]["uuid"] == row.uuid
                if not inserted:
                    row.version += 1
                    row.topic, row.endpoint = registration.topic, registration.endpoint
                    row.build_version = registration.build_version
                    row.last_seen_up, row.updated_at = now, now
                    row.reported_up = not row.forced_down
                rows.append(row)
                created.append(inserted)
            await session.flush()
            types = [
                common_pb2.EVENT_TYPE_ADDED if made else common_pb2.EVENT_TYPE_MODIFIED
                for made in created
            ]
            protos = await self._publish(session, rows, types)
        for row, inserted in zip(rows, created, strict=True):
            log.info(
                "service registered" if inserted else "service restarted",
                extra={
                    "host": row.host,
                    "binary": row.binary,
                    "uuid": row.uuid,
                    "version": row.version,
                },
            )
        return list(zip(protos, created, strict=True))
