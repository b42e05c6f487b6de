"""RegistryService over gRPC: proto in, domain call, proto out. No rules live here."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator

from berth.v1 import common_pb2, registry_pb2, registry_pb2_grpc
from google.protobuf.duration_pb2 import Duration
from grpc import aio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common import changefeed, db, paging, validation
from services.common.streams import until_stopped
from services.registry.aggregates import Aggregates
from services.registry.events import ServiceFeed
from services.registry.heartbeats import HeartbeatBatcher
from services.registry.services_table import ServicesTable
from services.registry.store import repository as repo


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromMilliseconds(int(seconds * 1000))
    return duration


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        services: ServicesTable,
        aggregates: Aggregates,
        heartbeats: HeartbeatBatcher,
        feed: ServiceFeed,
        report_interval_s: float,
        service_down_time_s: float,
        stopping: asyncio.Event,
    ) -> None:
        self._stopping = stopping
        self._sessions = sessions
        self._services = services
        self._aggregates = aggregates
        self._heartbeats = heartbeats
        self._feed = feed
        self._report_interval = report_interval_s
        self._down_time = service_down_time_s

    async def RegisterService(self, request, context):
        service, created = await self._services.register(request)
        return registry_pb2.RegisterServiceResponse(
            service=service,
            created=created,
            report_interval=_duration(self._report_interval),
            service_down_time=_duration(self._down_time),
        )

    async def Heartbeat(self, request, context):
        uuid = validation.uuid("service_uuid", request.service_uuid)
        return registry_pb2.HeartbeatResponse(result=await self._heartbeats.beat(uuid))

    async def HeartbeatStream(
        self,
        request_iterator: AsyncIterator[registry_pb2.HeartbeatStreamRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[registry_pb2.HeartbeatStreamResponse]:
        async for request in until_stopped(self._stopping, request_iterator):
            uuid = validation.uuid("service_uuid", request.service_uuid)
            yield registry_pb2.HeartbeatStreamResponse(result=await self._heartbeats.beat(uuid))

    async def ListServices(self, request, context):
        host = validation.name("host", request.host, required=False)
        binary = validation.name("binary", request.binary, required=False)
        query = ("services", host, binary)
        page = paging.read_page(request.page_size, request.page_token, query)
        async with self._sessions() as session:
            rows = await repo.list_services(
                session, host=host, binary=binary, after_id=page.after_id, limit=page.size + 1
            )
            protos = await self._services.protos(session, rows[: page.size])
        return registry_pb2.ListServicesResponse(
            services=protos, next_page_token=paging.next_token(list(rows), page, "id", query)
        )

    async def GetService(self, request, context):
        return registry_pb2.GetServiceResponse(service=await self._services.get(request.service))

    async def UpdateService(self, request, context):
        return registry_pb2.UpdateServiceResponse(service=await self._services.update(request))

    async def DeleteService(self, request, context):
        await self._services.delete(request.service)
        return registry_pb2.DeleteServiceResponse()

    async def WatchServices(self, request, context):
        listing = functools.partial(self._listing, changefeed.listing_batch(request.listing_batch))
        async for event in self._feed.watch(request.start_revision, listing, self._stopping):
            yield event

    async def _listing(self, batch: int = 0) -> AsyncIterator[registry_pb2.WatchServicesResponse]:
        """Every live service and aggregate at one revision (one per event, or `batch` per
        event), then SYNCED at that revision."""
        revision, services, aggregates = await db.uncancelled(self.read_listing())
        added = common_pb2.EVENT_TYPE_ADDED
        Response = registry_pb2.WatchServicesResponse
        if batch:
            for chunk in changefeed.chunks(services, batch):
                yield Response(type=added, revision=revision, services=chunk)
            for group in changefeed.chunks(aggregates, batch):
                yield Response(type=added, revision=revision, aggregates=group)
        else:
            for service in services:
                yield Response(type=added, revision=revision, service=service)
            for aggregate in aggregates:
                yield Response(type=added, revision=revision, aggregate=aggregate)
        yield registry_pb2.WatchServicesResponse(
            type=common_pb2.EVENT_TYPE_SYNCED, revision=revision
        )

    async def read_listing(
        self,
    ) -> tuple[int, list[registry_pb2.Service], list[registry_pb2.Aggregate]]:
        async with self._sessions() as session, session.begin():
            revision, _ = await repo.CHANGES.state(session, lock=True)
            services = await self._services.protos(
                session, await repo.list_services(session, limit=10**9)
            )
            return revision, services, await self._aggregates.every(session)

    async def CreateAggregate(self, request, context):
        return registry_pb2.CreateAggregateResponse(
            aggregate=await self._aggregates.create(request)
        )

    async def DeleteAggregate(self, request, context):
        await self._aggregates.delete(request.aggregate)
        return registry_pb2.DeleteAggregateResponse()

    async def ListAggregates(self, request, context):
        aggregates, token = await self._aggregates.list_page(request.page_size, request.page_token)
        return registry_pb2.ListAggregatesResponse(aggregates=aggregates, next_page_token=token)

    async def GetAggregate(self, request, context):
        return registry_pb2.GetAggregateResponse(
            aggregate=await self._aggregates.get(request.aggregate)
        )

    async def AddAggregateHost(self, request, context):
        return registry_pb2.AddAggregateHostResponse(
            aggregate=await self._aggregates.add_host(request.aggregate, request.host)
        )

    async def RemoveAggregateHost(self, request, context):
        return registry_pb2.RemoveAggregateHostResponse(
            aggregate=await self._aggregates.remove_host(request.aggregate, request.host)
        )

    async def UpdateAggregate(self, request, context):
        return registry_pb2.UpdateAggregateResponse(
            aggregate=await self._aggregates.update(request)
        )

    async def SetAggregateMetadata(self, request, context):
        return registry_pb2.SetAggregateMetadataResponse(
            aggregate=await self._aggregates.set_metadata(request.aggregate, dict(request.metadata))
        )
