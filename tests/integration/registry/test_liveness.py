"""Liveness transitions are published once, and a registry that could not listen judges no one."""

from __future__ import annotations

from berth.v1 import common_pb2, registry_pb2

from tests.integration.registry.support import key, register


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
