"""The HostState cache: built from the watches, guarded by generation, rebuilt after a flush."""

from __future__ import annotations

import grpc
import pytest
import redis.asyncio as aioredis
from berth.v1 import registry_pb2, scheduler_pb2
from grpc import aio

from services.scheduler.hoststate import HostState, Resources
from tests.integration.scheduler.cloud import eventually, spec
from tests.redis_keys import delete_keys


async def test_host_states_carry_the_node_and_the_registry_facts(cloud):
    (node_uuid,) = await cloud.add_host("c1", vcpus=8, memory_mb=16384, disk_gb=200)
    await cloud.registry_stub.CreateAggregate(
        registry_pb2.CreateAggregateRequest(
            name="fast", metadata={"availability_zone": "az1", "ssd": "true"}
        )
    )
    await cloud.registry_stub.AddAggregateHost(
        registry_pb2.AddAggregateHostRequest(
            aggregate=registry_pb2.AggregateRef(name="fast"), host="c1"
        )
    )
    scheduler, stub = await cloud.start_scheduler()
    await eventually(lambda: scheduler.mirror.facts["c1"].availability_zone == "az1")
    await eventually(lambda: scheduler.keeper._idle.is_set())
    (state,) = (
        await stub.ListHostStates(scheduler_pb2.ListHostStatesRequest(host="c1"))
    ).host_states
    assert state.node_uuid == node_uuid and state.nodename == "c1"
    assert (state.total.vcpus, state.total.memory_mb, state.total.disk_gb) == (8, 16384, 200)
    assert state.used.memory_mb == 512 and state.reserved_host_memory_mb == 512
    assert state.service_up and not state.service_disabled
    assert state.availability_zone == "az1" and list(state.aggregates) == ["fast"]
    assert state.aggregate_metadata["ssd"] == "true"
    assert state.ram_allocation_ratio == 1.5 and state.generation >= 1


async def test_list_host_states_pages_through_every_node_once(cloud):
    await cloud.add_host("rack", nodes=7)
    _, stub = await cloud.start_scheduler()
    seen, token = [], ""
    while True:
        page = await stub.ListHostStates(
            scheduler_pb2.ListHostStatesRequest(page_size=3, page_token=token)
        )
        seen += [s.nodename for s in page.host_states]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(f"rack-n{i}" for i in range(7))


async def test_an_older_generation_never_overwrites_a_newer_one(cloud):
    (node_uuid,) = await cloud.add_host("c1")
    scheduler, _ = await cloud.start_scheduler()
    await eventually(lambda: scheduler.keeper._idle.is_set())
    current = scheduler.mirror.nodes[node_uuid]
    stale = HostState(node_uuid, "c1", "c1", current.generation - 1, total=Resources(1, 1, 1))
    written = await scheduler.store.put_nodes([(stale, b"", [])])
    assert written == 0
    assert not scheduler.mirror.put_node(stale, [])
    newer = HostState(node_uuid, "c1", "c1", current.generation + 1, total=Resources(1, 1, 1))
    assert await scheduler.store.put_nodes([(newer, b"", [])]) == 1


async def test_a_disabled_host_stops_receiving_instances(cloud):
    await cloud.add_host("c1", memory_mb=65536)
    await cloud.add_host("c2")
    scheduler, stub = await cloud.start_scheduler(max_attempts=1)
    assert (await stub.SelectDestinations(spec("m1.tiny"))).selections[0].primary.host == "c1"
    await cloud.disable("c1")
    await eventually(lambda: scheduler.mirror.facts["c1"].service_disabled)
    for _ in range(3):
        response = await stub.SelectDestinations(spec("m1.tiny"))
        assert response.selections[0].primary.host == "c2"


async def test_a_flushed_redis_is_rebuilt_with_the_claims_and_scheduling_goes_on(cloud):
    await cloud.add_host("c1", memory_mb=2 * 2048 + 512, ram_allocation_ratio=1.0)
    scheduler, stub = await cloud.start_scheduler(max_attempts=1)
    await stub.SelectDestinations(spec("m1.small"))
    client = aioredis.from_url(cloud.redis_url)
    try:
        delete_keys(cloud.redis_url, cloud.redis_prefix)  # the scheduler's cache is flushed
        # Right after the flush: the node is put back on demand, with the claim it held.
        response = await stub.SelectDestinations(spec("m1.small"))
        assert response.selections[0].primary.host == "c1"
        # The keeper notices the missing cache marker and writes everything back.
        meta = scheduler.store.keys.meta
        await eventually(lambda: client.exists(meta), what="the cache marker is back")
        states = await stub.ListHostStates(scheduler_pb2.ListHostStatesRequest())
        assert [len(s.pending_claims) for s in states.host_states] == [2]
    finally:
        await client.aclose()
    # Both rooms are claimed: a third m1.small is refused, never over-committed.
    with pytest.raises(aio.AioRpcError) as err:
        await stub.SelectDestinations(spec("m1.small"))
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
