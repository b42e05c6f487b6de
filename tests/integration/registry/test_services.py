"""The services table over real gRPC: register, heartbeat, list, get, update, delete."""

from __future__ import annotations

import grpc
import pytest
from berth.client.errors import from_rpc_error
from berth.v1 import registry_pb2

from tests.integration.registry.support import key, register


async def test_register_creates_a_row_and_a_restart_keeps_the_uuid_and_bumps_the_version(stub):
    first = await stub.RegisterService(
        registry_pb2.RegisterServiceRequest(host="c1", binary="berth-compute", endpoint="c1:50054")
    )
    again = await stub.RegisterService(
        registry_pb2.RegisterServiceRequest(host="c1", binary="berth-compute", endpoint="c1:6000")
    )
    assert first.created and not again.created
    assert again.service.uuid == first.service.uuid
    assert (first.service.version, again.service.version) == (1, 2)
    assert again.service.endpoint == "c1:6000"
    assert first.service.topic == "compute"
    assert first.report_interval.seconds == 10 and first.service_down_time.seconds == 60


async def test_a_heartbeat_counts_and_stamps_the_registry_clock(stub, clock):
    service = await register(stub)
    clock.advance(5)
    result = (await stub.Heartbeat(registry_pb2.HeartbeatRequest(service_uuid=service.uuid))).result
    assert result.report_count == 1
    assert result.last_seen_up.ToDatetime().replace(tzinfo=clock.now.tzinfo) == clock.now
    got = (await stub.GetService(registry_pb2.GetServiceRequest(service=key("compute-1")))).service
    assert got.report_count == 1
    assert got.last_seen_up == result.last_seen_up


async def test_the_heartbeat_stream_answers_every_report(stub):
    service = await register(stub)
    call = stub.HeartbeatStream()
    counts = []
    for _ in range(3):
        await call.write(registry_pb2.HeartbeatStreamRequest(service_uuid=service.uuid))
        counts.append((await call.read()).result.report_count)
    await call.done_writing()
    assert counts == [1, 2, 3]


async def test_a_heartbeat_for_an_unknown_service_is_not_found(stub):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Heartbeat(
            registry_pb2.HeartbeatRequest(service_uuid="7a1b7a56-59d0-4f38-9c1e-1b2fb4d9a0a1")
        )
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    assert from_rpc_error(err.value).reason == "SERVICE_NOT_FOUND"


async def test_list_filters_by_host_and_binary(stub):
    for host in ("a", "b"):
        for binary in ("berth-compute", "berth-node"):
            await register(stub, host, binary)
    listed = (await stub.ListServices(registry_pb2.ListServicesRequest(host="a"))).services
    assert sorted((s.host, s.binary) for s in listed) == [
        ("a", "berth-compute"),
        ("a", "berth-node"),
    ]
    listed = (
        await stub.ListServices(registry_pb2.ListServicesRequest(binary="berth-node"))
    ).services
    assert sorted(s.host for s in listed) == ["a", "b"]


async def test_paging_sees_every_service_once(stub):
    for i in range(7):
        await register(stub, f"h{i}")
    seen, token = [], ""
    while True:
        page = await stub.ListServices(
            registry_pb2.ListServicesRequest(page_size=3, page_token=token)
        )
        seen += [s.host for s in page.services]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == [f"h{i}" for i in range(7)]


async def test_disable_with_a_reason_and_enable_again(stub):
    await register(stub)
    disabled = (
        await stub.UpdateService(
            registry_pb2.UpdateServiceRequest(
                service=key("compute-1"), disabled=True, disabled_reason="disk swap"
            )
        )
    ).service
    assert disabled.disabled and disabled.disabled_reason == "disk swap"
    enabled = (
        await stub.UpdateService(
            registry_pb2.UpdateServiceRequest(service=key("compute-1"), disabled=False)
        )
    ).service
    assert not enabled.disabled and enabled.disabled_reason == ""


async def test_forced_down_is_down_whatever_the_heartbeats_and_clearing_it_restores_up(stub):
    service = await register(stub)
    down = (
        await stub.UpdateService(
            registry_pb2.UpdateServiceRequest(service=key("compute-1"), forced_down=True)
        )
    ).service
    await stub.Heartbeat(registry_pb2.HeartbeatRequest(service_uuid=service.uuid))
    assert down.forced_down and not down.up
    got = (await stub.GetService(registry_pb2.GetServiceRequest(service=key("compute-1")))).service
    assert not got.up
    up = (
        await stub.UpdateService(
            registry_pb2.UpdateServiceRequest(service=key("compute-1"), forced_down=False)
        )
    ).service
    assert up.up


async def test_a_silent_service_goes_down_after_service_down_time(stub, registry, clock):
    service = await register(stub)
    clock.advance(61)  # past the down time, and past the registry's start-up grace
    got = (await stub.GetService(registry_pb2.GetServiceRequest(service=key("compute-1")))).service
    assert not got.up
    await stub.Heartbeat(registry_pb2.HeartbeatRequest(service_uuid=service.uuid))
    got = (await stub.GetService(registry_pb2.GetServiceRequest(service=key("compute-1")))).service
    assert got.up


async def test_enabling_a_dead_service_does_not_make_it_look_up(stub, clock):
    """Nova bug 1420848: an admin update must never count as a sign of life."""
    await register(stub)
    await stub.UpdateService(
        registry_pb2.UpdateServiceRequest(service=key("compute-1"), disabled=True)
    )
    clock.advance(120)
    enabled = (
        await stub.UpdateService(
            registry_pb2.UpdateServiceRequest(service=key("compute-1"), disabled=False)
        )
    ).service
    assert not enabled.disabled
    assert not enabled.up


async def test_delete_soft_deletes_and_the_key_can_register_again(stub):
    old = await register(stub)
    await stub.DeleteService(
        registry_pb2.DeleteServiceRequest(service=registry_pb2.ServiceRef(uuid=old.uuid))
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetService(
            registry_pb2.GetServiceRequest(service=registry_pb2.ServiceRef(uuid=old.uuid))
        )
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    new = await register(stub)
    assert new.uuid != old.uuid and new.version == 1


async def test_a_heartbeat_after_delete_is_not_found_so_the_process_registers_again(stub, registry):
    service = await register(stub)
    await stub.Heartbeat(registry_pb2.HeartbeatRequest(service_uuid=service.uuid))  # cached now
    await stub.DeleteService(registry_pb2.DeleteServiceRequest(service=key("compute-1")))
    await registry.feed.catch_up()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Heartbeat(registry_pb2.HeartbeatRequest(service_uuid=service.uuid))
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
