"""The services table's rules: register, update, delete, list, and the events they publish."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from berth.client.errors import InvalidArgument, NotFound
from berth.v1 import common_pb2, registry_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common import auth, validation
from services.common.settings import COMPUTE_BINARY
from services.registry import convert
from services.registry.events import ServiceFeed
from services.registry.liveness import Liveness
from services.registry.registrations import Registration, Registrations
from services.registry.store import repository as repo
from services.registry.store.models import Service

log = logging.getLogger(__name__)

# Asked before a compute service is deleted: raises FailedPrecondition while its host has
# instances, and deletes the host's compute nodes otherwise (wired to the node service).
HostGuard = Callable[[str], Awaitable[None]]


class ServicesTable:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        liveness: Liveness,
        feed: ServiceFeed,
        default_zone: str,
        host_guard: HostGuard | None = None,
    ) -> None:
        self._sessions = sessions
        self._liveness = liveness
        self._feed = feed
        self._default_zone = default_zone
        self._host_guard = host_guard
        self._registrations = Registrations(sessions, liveness.clock, self.publish_each, feed.poke)

    # --- protos ---------------------------------------------------------------------

    async def protos(
        self, session: AsyncSession, rows: Sequence[Service]
    ) -> list[registry_pb2.Service]:
        zones = await repo.zones_of_hosts(session, sorted({r.host for r in rows}))
        now = self._liveness.judged_at(self._liveness.clock())
        return [
            convert.service(
                row,
                up=self._liveness.is_up(row, now),
                zone=convert.service_zone(row, zones, self._default_zone),
            )
            for row in rows
        ]

    async def publish(
        self, session: AsyncSession, rows: Sequence[Service], type_: int
    ) -> list[registry_pb2.Service]:
        """Record one event of `type_` per row in the caller's transaction; returns the
        published protos."""
        return await self.publish_each(session, rows, [type_] * len(rows))

    async def publish_each(
        self, session: AsyncSession, rows: Sequence[Service], types: Sequence[int]
    ) -> list[registry_pb2.Service]:
        """`publish` with an event type per row, all under one take of the counter.

        The protos are built first: taking revisions locks the counter row until commit,
        so nothing else should happen between that and the commit.
        """
        now = self._liveness.clock()
        protos = await self.protos(session, rows)
        events = [
            (type_, "service", row.uuid, proto.SerializeToString())
            for row, type_, proto in zip(rows, types, protos, strict=True)
        ]
        if events:
            await repo.CHANGES.add_many(session, events, now)
        return protos

    # --- commands -------------------------------------------------------------------

    async def register(
        self, request: registry_pb2.RegisterServiceRequest
    ) -> tuple[registry_pb2.Service, bool]:
        host = validation.name("host", request.host)
        binary = validation.name("binary", request.binary)
        topic = validation.name("topic", request.topic, required=False) or binary.removeprefix(
            "berth-"
        )
        endpoint = validation.name("endpoint", request.endpoint, required=False)
        build_version = validation.text("build_version", request.build_version, max_length=64)
        auth.require_host(host)
        return await self._registrations.register(
            Registration(host, binary, topic, endpoint, build_version)
        )

    async def update(self, request: registry_pb2.UpdateServiceRequest) -> registry_pb2.Service:
        if not request.HasField("disabled") and not request.HasField("forced_down"):
            raise InvalidArgument.field(
                "disabled", "set disabled and/or forced_down; nothing to change"
            )
        reason = validation.text("disabled_reason", request.disabled_reason)
        if reason and not (request.HasField("disabled") and request.disabled):
            raise InvalidArgument.field("disabled_reason", "only goes with disabled = true")
        async with self._sessions() as session, session.begin():
            row = await self._find(session, request.service, for_update=True)
            if request.HasField("disabled"):
                row.disabled = request.disabled
                row.disabled_reason = (reason or None) if request.disabled else None
            if request.HasField("forced_down"):
                row.forced_down = request.forced_down
            now = self._liveness.clock()
            row.updated_at = now  # never last_seen_up: an admin change is no sign of life
            row.reported_up = self._liveness.is_up(row, self._liveness.judged_at(now))
            (proto,) = await self.publish(session, [row], common_pb2.EVENT_TYPE_MODIFIED)
        self._feed.poke()
        log.info(
            "service updated",
            extra={
                "host": row.host,
                "binary": row.binary,
                "disabled": row.disabled,
                "forced_down": row.forced_down,
                "by": auth.current_principal.get().name,
            },
        )
        return proto

    async def delete(self, ref: registry_pb2.ServiceRef) -> None:
        async with self._sessions() as session:
            row = await self._find(session, ref)
        if row.binary == COMPUTE_BINARY and self._host_guard is not None:
            await self._host_guard(row.host)
        async with self._sessions() as session, session.begin():
            row = await self._find(session, ref, for_update=True)
            now = self._liveness.clock()
            row.deleted, row.deleted_at, row.updated_at = row.id, now, now
            await self.publish(session, [row], common_pb2.EVENT_TYPE_DELETED)
        self._feed.poke()
        log.info(
            "service deleted",
            extra={
                "host": row.host,
                "binary": row.binary,
                "uuid": row.uuid,
                "by": auth.current_principal.get().name,
            },
        )

    # --- queries --------------------------------------------------------------------

    async def get(self, ref: registry_pb2.ServiceRef) -> registry_pb2.Service:
        async with self._sessions() as session:
            row = await self._find(session, ref)
            (proto,) = await self.protos(session, [row])
            return proto

    async def _find(
        self, session: AsyncSession, ref: registry_pb2.ServiceRef, *, for_update: bool = False
    ) -> Service:
        which = ref.WhichOneof("ref")
        if which == "uuid":
            uuid = validation.uuid("service.uuid", ref.uuid)
            row = await repo.service_by_uuid(session, uuid, for_update=for_update)
            missing = f"no service with uuid {uuid}"
        elif which == "key":
            host = validation.name("service.key.host", ref.key.host)
            binary = validation.name("service.key.binary", ref.key.binary)
            row = await repo.service_by_key(session, host, binary, for_update=for_update)
            missing = f"no {binary} service on host {host}"
        else:
            raise InvalidArgument.field(
                "service", "name the service by uuid or by key (host and binary)"
            )
        if row is None:
            raise NotFound(missing, reason="SERVICE_NOT_FOUND")
        return row

    async def sweep(self) -> int:
        """Publish liveness transitions (up -> down, down -> up); returns how many."""
        # Judged as of the moment the table knew every heartbeat received, taken before the
        # read: a beat stored while we read must not make an older moment look like silence.
        now = self._liveness.judged_at(self._liveness.clock())
        async with self._sessions() as session:
            candidates = await repo.liveness_candidates(session, self._liveness.cutoff(now))
        flipped = 0
        for row in candidates:
            up = self._liveness.is_up(row, now)
            if up == row.reported_up:
                continue  # in grace: the registry has not listened long enough to judge
            async with self._sessions() as session, session.begin():
                if not await repo.set_reported_up(session, row.id, row.reported_up, up):
                    continue  # another replica published it
                row.reported_up = up
                await self.publish(session, [row], common_pb2.EVENT_TYPE_MODIFIED)
            flipped += 1
            log.log(
                logging.WARNING if not up else logging.INFO,
                "service is up" if up else "service is down",
                extra={"host": row.host, "binary": row.binary, "last_seen_up": row.last_seen_up},
            )
        if flipped:
            self._feed.poke()
        return flipped
