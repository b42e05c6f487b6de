"""Host aggregates and availability zones: a host is in at most one zone."""

from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Sequence

from berth.client.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from berth.v1 import common_pb2, registry_pb2
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common import paging, validation
from services.registry import convert
from services.registry.events import ServiceFeed
from services.registry.liveness import Liveness
from services.registry.services_table import ServicesTable
from services.registry.store import repository as repo
from services.registry.store.models import Aggregate

log = logging.getLogger(__name__)

AZ_KEY = "availability_zone"


class Aggregates:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        liveness: Liveness,
        feed: ServiceFeed,
        services: ServicesTable,
    ) -> None:
        self._sessions = sessions
        self._clock = liveness.clock
        self._feed = feed
        self._services = services

    async def _protos(
        self, session: AsyncSession, rows: Sequence[Aggregate]
    ) -> list[registry_pb2.Aggregate]:
        ids = [r.id for r in rows]
        hosts = await repo.aggregate_hosts(session, ids)
        metadata = await repo.aggregate_metadata(session, ids)
        return [convert.aggregate(r, hosts[r.id], metadata[r.id]) for r in rows]

    async def _find(
        self, session: AsyncSession, ref: registry_pb2.AggregateRef, *, for_update: bool = True
    ) -> Aggregate:
        """The aggregate named by `ref`; writers lock its row, so two changes of one aggregate
        (its metadata keys above all) run one after the other instead of colliding."""
        which = ref.WhichOneof("ref")
        if which == "uuid":
            uuid = validation.uuid("aggregate.uuid", ref.uuid)
            row = await repo.aggregate_by(session, uuid=uuid, for_update=for_update)
        elif which == "name":
            name = validation.name("aggregate.name", ref.name)
            row = await repo.aggregate_by(session, name=name, for_update=for_update)
        elif which == "id":
            # Row ids are positive 32-bit integers: any other id names no aggregate (and
            # must not reach the database, whose integer it would overflow).
            row = (
                await repo.aggregate_by(session, id=ref.id, for_update=for_update)
                if 0 < ref.id < 2**31
                else None
            )
        else:
            raise InvalidArgument.field("aggregate", "name the aggregate by uuid, name or id")
        if row is None:
            raise NotFound(f"no aggregate {getattr(ref, which)!r}", reason="AGGREGATE_NOT_FOUND")
        return row

    async def _commit_change(
        self, session: AsyncSession, row: Aggregate, type_: int, zone_hosts: Sequence[str] = ()
    ) -> registry_pb2.Aggregate:
        """Publish the aggregate's new state, and the services whose zone it changed."""
        row.updated_at = self._clock()
        (proto,) = await self._protos(session, [row])
        await repo.CHANGES.add(
            session, type_, "aggregate", row.uuid, proto.SerializeToString(), self._clock()
        )
        if zone_hosts:
            await self._services.publish(
                session,
                await repo.services_of_hosts(session, sorted(zone_hosts)),
                common_pb2.EVENT_TYPE_MODIFIED,
            )
        return proto

    async def _check_zone(
        self, session: AsyncSession, hosts: Sequence[str], zone: str, aggregate_id: int
    ) -> None:
        """A host may be in one availability zone only (Nova's rule)."""
        if not zone or not hosts:
            return
        for host, other in (
            await repo.zones_of_hosts(session, hosts, exclude_aggregate=aggregate_id)
        ).items():
            if other != zone:
                raise FailedPrecondition(
                    f"host {host} is already in availability zone {other!r}; a host can be in one zone only",
                    reason="HOST_IN_OTHER_ZONE",
                    metadata={"host": host, "zone": other},
                )

    def _metadata(self, raw: dict[str, str], field: str) -> dict[str, str]:
        for key, value in raw.items():
            validation.name(f"{field}[{key[:32]!r}]", key)
            validation.text(f"{field}[{key[:32]!r}]", value)
        return dict(raw)

    async def create(self, request: registry_pb2.CreateAggregateRequest) -> registry_pb2.Aggregate:
        name = validation.name("name", request.name)
        metadata = self._metadata(dict(request.metadata), "metadata")
        zone = validation.name("availability_zone", request.availability_zone, required=False)
        if zone:
            if metadata.get(AZ_KEY, zone) != zone:
                raise InvalidArgument.field(
                    "availability_zone", "differs from metadata['availability_zone']"
                )
            metadata[AZ_KEY] = zone
        now = self._clock()
        try:
            async with self._sessions() as session, session.begin():
                row = Aggregate(
                    uuid=str(uuidlib.uuid4()), name=name, created_at=now, updated_at=now, deleted=0
                )
                session.add(row)
                await session.flush()
                await repo.set_aggregate_metadata(session, row.id, metadata)
                proto = await self._commit_change(session, row, common_pb2.EVENT_TYPE_ADDED)
        except IntegrityError:
            raise AlreadyExists(
                f"an aggregate named {name!r} exists already", reason="AGGREGATE_EXISTS"
            ) from None
        self._feed.poke()
        log.info("aggregate created", extra={"aggregate": name, "zone": zone})
        return proto

    async def delete(self, ref: registry_pb2.AggregateRef) -> None:
        async with self._sessions() as session, session.begin():
            row = await self._find(session, ref)
            hosts = (await repo.aggregate_hosts(session, [row.id]))[row.id]
            if hosts:
                raise FailedPrecondition(
                    f"aggregate {row.name!r} has {len(hosts)} host(s) ({', '.join(hosts[:5])}); remove them first",
                    reason="AGGREGATE_HAS_HOSTS",
                )
            now = self._clock()
            row.deleted, row.deleted_at = row.id, now
            await self._commit_change(session, row, common_pb2.EVENT_TYPE_DELETED)
        self._feed.poke()
        log.info("aggregate deleted", extra={"aggregate": row.name})

    async def get(self, ref: registry_pb2.AggregateRef) -> registry_pb2.Aggregate:
        async with self._sessions() as session:
            (proto,) = await self._protos(
                session, [await self._find(session, ref, for_update=False)]
            )
            return proto

    async def list_page(
        self, page_size: int, page_token: str
    ) -> tuple[list[registry_pb2.Aggregate], str]:
        page = paging.read_page(page_size, page_token, ("aggregates",))
        async with self._sessions() as session:
            rows = await repo.list_aggregates(
                session, after_name=page.after_name, limit=page.size + 1
            )
            protos = await self._protos(session, rows[: page.size])
        return protos, paging.next_token(list(rows), page, "name", ("aggregates",))

    async def every(self, session: AsyncSession) -> list[registry_pb2.Aggregate]:
        """All live aggregates, in the caller's transaction (the watch listing)."""
        return await self._protos(session, await repo.list_aggregates(session, limit=10**9))

    async def add_host(self, ref: registry_pb2.AggregateRef, host: str) -> registry_pb2.Aggregate:
        host = validation.name("host", host)
        async with self._sessions() as session, session.begin():
            row = await self._find(session, ref)
            if not await repo.services_of_hosts(session, [host]):
                raise NotFound(f"no service runs on host {host!r}", reason="HOST_NOT_FOUND")
            zone = (await repo.aggregate_metadata(session, [row.id]))[row.id].get(AZ_KEY, "")
            await self._check_zone(session, [host], zone, row.id)
            try:
                async with session.begin_nested():
                    await repo.add_aggregate_host(session, row.id, host)
            except IntegrityError:
                raise AlreadyExists(
                    f"host {host} is in aggregate {row.name!r} already", reason="HOST_IN_AGGREGATE"
                ) from None
            proto = await self._commit_change(
                session, row, common_pb2.EVENT_TYPE_MODIFIED, [host] if zone else []
            )
        self._feed.poke()
        log.info("host added to aggregate", extra={"aggregate": row.name, "host": host})
        return proto

    async def remove_host(
        self, ref: registry_pb2.AggregateRef, host: str
    ) -> registry_pb2.Aggregate:
        host = validation.name("host", host)
        async with self._sessions() as session, session.begin():
            row = await self._find(session, ref)
            if not await repo.remove_aggregate_host(session, row.id, host):
                raise NotFound(
                    f"host {host} is not in aggregate {row.name!r}", reason="HOST_NOT_IN_AGGREGATE"
                )
            zone = (await repo.aggregate_metadata(session, [row.id]))[row.id].get(AZ_KEY, "")
            proto = await self._commit_change(
                session, row, common_pb2.EVENT_TYPE_MODIFIED, [host] if zone else []
            )
        self._feed.poke()
        log.info("host removed from aggregate", extra={"aggregate": row.name, "host": host})
        return proto

    async def update(self, request: registry_pb2.UpdateAggregateRequest) -> registry_pb2.Aggregate:
        """A new name, a new zone, or both, in one change."""
        name = validation.name("name", request.name, required=False)
        zone_changed = request.HasField("availability_zone")
        zone = validation.name("availability_zone", request.availability_zone, required=False)
        if not name and not zone_changed:
            raise InvalidArgument.field("name", "give a new name, an availability_zone, or both")
        try:
            async with self._sessions() as session, session.begin():
                row = await self._find(session, request.aggregate)
                old_name = row.name
                hosts = (await repo.aggregate_hosts(session, [row.id]))[row.id]
                if name:
                    row.name = name
                    await session.flush()  # a name taken already fails here
                if zone_changed:
                    await self._check_zone(session, hosts, zone, row.id)
                    await repo.set_aggregate_metadata(session, row.id, {AZ_KEY: zone})
                proto = await self._commit_change(
                    session, row, common_pb2.EVENT_TYPE_MODIFIED, hosts if zone_changed else []
                )
        except IntegrityError:
            raise AlreadyExists(
                f"an aggregate named {name!r} exists already", reason="AGGREGATE_EXISTS"
            ) from None
        self._feed.poke()
        log.info(
            "aggregate updated",
            extra={
                "aggregate": old_name,
                "new_name": proto.name,
                "zone": zone if zone_changed else "-",
            },
        )
        return proto

    async def set_metadata(
        self, ref: registry_pb2.AggregateRef, raw: dict[str, str]
    ) -> registry_pb2.Aggregate:
        if not raw:
            raise InvalidArgument.field(
                "metadata", "name at least one key to set or (with an empty value) remove"
            )
        changes = self._metadata(raw, "metadata")
        async with self._sessions() as session, session.begin():
            row = await self._find(session, ref)
            hosts = (await repo.aggregate_hosts(session, [row.id]))[row.id]
            zone_changed = AZ_KEY in changes
            if zone_changed:
                await self._check_zone(session, hosts, changes[AZ_KEY], row.id)
            await repo.set_aggregate_metadata(session, row.id, changes)
            proto = await self._commit_change(
                session, row, common_pb2.EVENT_TYPE_MODIFIED, hosts if zone_changed else []
            )
        self._feed.poke()
        log.info(
            "aggregate metadata set",
            extra={"aggregate": row.name, "keys": ",".join(sorted(changes))},
        )
        return proto
