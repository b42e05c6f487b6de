"""Claims: confirmed by the node's report, released, expired, raced for, kept across restarts."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from berth.v1 import scheduler_pb2
from grpc import aio

from services.scheduler.columns import MEMORY
from tests.integration.scheduler.cloud import eventually, spec


async def pending(stub) -> dict[str, int]:
    states = await stub.ListHostStates(scheduler_pb2.ListHostStatesRequest())
    return {s.host: len(s.pending_claims) for s in states.host_states}


async def test_a_claim_is_dropped_when_the_node_reports_the_instance(cloud):
    await cloud.add_host("c1")
    scheduler, stub = await cloud.start_scheduler(max_attempts=1)
    response = await stub.SelectDestinations(spec("m1.small"))
    claim = response.selections[0].primary
    assert await pending(stub) == {"c1": 1}
    await cloud.place("c1", "c1", claim)
    await eventually(lambda: scheduler.mirror.claim_count(claim.node_uuid) == 0)
    assert await pending(stub) == {"c1": 0}
    # The instance now counts in used, once: 2048 MB on top of the 512 reserved.
    row = scheduler.mirror.row_of[claim.node_uuid]
    columns = scheduler.mirror.columns
    assert scheduler.mirror.nodes[claim.node_uuid].used.memory_mb == 512 + 2048
    assert columns.usage[MEMORY, row] == 2048 and columns.claimed[MEMORY, row] == 0


async def test_release_frees_the_room_and_answers_how_many_existed(cloud):
    await cloud.add_host("c1", memory_mb=2048 + 512, ram_allocation_ratio=1.0)
    _, stub = await cloud.start_scheduler(max_attempts=1)
    claim = (await stub.SelectDestinations(spec("m1.small"))).selections[0].primary
    with pytest.raises(aio.AioRpcError) as err:
        await stub.SelectDestinations(spec("m1.small"))
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    released = await stub.ReleaseClaims(
        scheduler_pb2.ReleaseClaimsRequest(claim_ids=[claim.claim_id, "not-a-claim"])
    )
    assert released.released == 1
    again = await stub.ReleaseClaims(scheduler_pb2.ReleaseClaimsRequest(claim_ids=[claim.claim_id]))
    assert again.released == 0
    assert (await stub.SelectDestinations(spec("m1.small"))).selections[0].primary.host == "c1"


async def test_an_unconfirmed_claim_expires_and_its_room_returns(cloud):
    await cloud.add_host("c1", memory_mb=2048 + 512, ram_allocation_ratio=1.0)
    _, stub = await cloud.start_scheduler(max_attempts=1, claim_ttl=0.3)
    await stub.SelectDestinations(spec("m1.small"))
    with pytest.raises(aio.AioRpcError):
        await stub.SelectDestinations(spec("m1.small"))
    await asyncio.sleep(0.4)
    assert (await stub.SelectDestinations(spec("m1.small"))).selections[0].primary.host == "c1"


async def test_two_schedulers_racing_for_the_last_rooms_never_overcommit(cloud):
    # Eight nodes with room for two m1.small each: 16 rooms, 24 requests from two replicas.
    for index in range(8):
        await cloud.add_host(f"c{index}", memory_mb=2 * 2048 + 512, ram_allocation_ratio=1.0)
    _, first = await cloud.start_scheduler(max_attempts=1, host_subset_size=1)
    _, second = await cloud.start_scheduler(max_attempts=1, host_subset_size=1)

    async def boot(stub) -> str | None:
        try:
            response = await stub.SelectDestinations(spec("m1.small", seed=None))
        except aio.AioRpcError as exc:
            assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            return None
        return response.selections[0].primary.host

    hosts = await asyncio.gather(*(boot(s) for _ in range(12) for s in (first, second)))
    placed = [h for h in hosts if h is not None]
    assert len(placed) == 16  # every room taken, none twice, no false "no valid host"
    assert all(placed.count(f"c{i}") == 2 for i in range(8))
    assert set((await pending(first)).values()) == {2}


async def test_a_restarted_scheduler_keeps_the_claims_in_redis(cloud):
    await cloud.add_host("c1", memory_mb=2048 + 512, ram_allocation_ratio=1.0)
    scheduler, stub = await cloud.start_scheduler(max_attempts=1)
    await stub.SelectDestinations(spec("m1.small"))
    await scheduler.stop(0)
    cloud.schedulers.remove(scheduler)
    restarted, stub = await cloud.start_scheduler(max_attempts=1)
    assert restarted.mirror.claim_count(next(iter(restarted.mirror.nodes))) == 1
    with pytest.raises(aio.AioRpcError) as err:
        await stub.SelectDestinations(spec("m1.small"))
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_another_replica_learns_a_claim_and_its_release_from_the_events(cloud):
    await cloud.add_host("c1")
    first, stub = await cloud.start_scheduler(max_attempts=1)
    second, _ = await cloud.start_scheduler(max_attempts=1)
    claim = (await stub.SelectDestinations(spec("m1.small"))).selections[0].primary
    node = claim.node_uuid
    # The event carries the claim: the other mirror holds the same claim, deadline included.
    await eventually(lambda: second.mirror.claim_count(node) == 1)
    [theirs] = second.mirror.claims(node)
    [ours] = first.mirror.claims(node)
    assert theirs == ours and theirs.claim_id == claim.claim_id
    await stub.ReleaseClaims(scheduler_pb2.ReleaseClaimsRequest(claim_ids=[claim.claim_id]))
    await eventually(lambda: second.mirror.claim_count(node) == 0)

    # An event that names only the node (a replica of an older release) has the node's
    # claims read back from Redis.
    again = (await stub.SelectDestinations(spec("m1.small"))).selections[0].primary
    await eventually(lambda: second.mirror.claim_count(node) == 1)
    second.mirror.remove_claims([again.claim_id])  # as if its event had been missed
    keys = first.store.keys
    await first.store.redis.publish(keys.channel, f"older-replica {keys.claims(node)}")
    await eventually(lambda: second.mirror.claim_count(node) == 1)
