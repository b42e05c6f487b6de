"""Liveness transitions are published once, and a registry that could not listen judges no one."""

from __future__ import annotations

import asyncio

import pytest
from berth.v1 import common_pb2, registry_pb2
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.common import db
from tests.integration.registry.support import key, register, until


async def _next_service_event(watch):
    async for event in watch:
        if event.HasField("service"):
            return event
    raise AssertionError("watch ended")


async def test_the_sweeper_publishes_down_then_up_once(stub, registry, clock):
    service = await register(stub)
    watch = stub.WatchServices(registry_pb2.WatchServicesRequest(start_revision=1))
    clock.advance(61)
    assert await registry.services.sweep() == 1
    assert await registry.services.sweep() == 0  # nothing new to publish
    event = await _next_service_event(watch)
    assert event.type == common_pb2.EVENT_TYPE_MODIFIED and not event.service.up
    await stub.Heartbeat(registry_pb2.HeartbeatRequest(service_uuid=service.uuid))
    assert await registry.services.sweep() == 1
    event = await _next_service_event(watch)
    assert event.service.up
    watch.cancel()


async def test_a_registry_that_just_started_marks_no_live_service_down(start, stub, clock):
    await register(stub)
    clock.advance(45)
    # A second registry starts (a restart or a new replica) and hears nothing for 30 s.
    replica = await start()
    clock.advance(30)  # 75 s since the last heartbeat, but the replica listened only 30 s
    assert await replica.services.sweep() == 0
    clock.advance(31)
    assert await replica.services.sweep() == 1


async def test_while_heartbeats_cannot_be_stored_nobody_is_declared_down(stub, registry, clock):
    await register(stub)
    registry.liveness.deaf()  # what a failed batch does
    clock.advance(600)
    assert await registry.services.sweep() == 0
    got = (await stub.GetService(registry_pb2.GetServiceRequest(service=key("compute-1")))).service
    assert got.up


async def test_a_heartbeat_received_but_not_yet_stored_counts_as_heard(
    stub, registry, clock, database
):
    if database.backend == "sqlite":
        pytest.skip("SQLite readers wait for a held write lock, so nothing could be judged")
    service = await register(stub)
    clock.advance(50)
    # Another transaction holds the service's row: the heartbeat's batch waits to be stored.
    engine = create_async_engine(db.async_url(database.url))
    try:
        async with engine.connect() as holder:
            await holder.execute(
                text("UPDATE services SET report_count = report_count WHERE uuid = :u"),
                {"u": service.uuid},
            )
            beat = asyncio.ensure_future(
                stub.Heartbeat(registry_pb2.HeartbeatRequest(service_uuid=service.uuid))
            )
            known = registry.heartbeats._known  # received: counted in the registry's cache
            await until(
                lambda: service.uuid in known and known[service.uuid].report_count >= 1,
                5,
                "the heartbeat to arrive",
            )
            clock.advance(30)  # 80 s since the stored beat, 30 s since the received one
            assert await registry.services.sweep() == 0
            got = await stub.GetService(registry_pb2.GetServiceRequest(service=key("compute-1")))
            assert got.service.up
            await holder.rollback()
        await beat
    finally:
        await engine.dispose()
    assert await registry.services.sweep() == 0
