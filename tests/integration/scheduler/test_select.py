"""SelectDestinations over real gRPC, with HostState kept in a real Redis."""

from __future__ import annotations

import grpc
import pytest
from berth.client.errors import from_rpc_error
from berth.v1 import scheduler_pb2
from grpc import aio

from tests.integration.scheduler.cloud import eventually, spec


async def test_an_instance_gets_a_claimed_primary_and_unclaimed_alternates_on_other_hosts(cloud):
    for host in ("c1", "c2", "c3", "c4"):
        await cloud.add_host(host)
    _scheduler, stub = await cloud.start_scheduler()
    response = await stub.SelectDestinations(spec("m1.small"))
    (selection,) = response.selections
    hosts = [selection.primary.host, *(a.host for a in selection.alternates)]
    assert len(hosts) == 3 and len(set(hosts)) == 3  # max_attempts 3: primary + 2 alternates
    assert selection.primary.resources.memory_mb == 2048
    assert selection.primary.claim_id.startswith(selection.primary.node_uuid + ".")
    for alternate in selection.alternates:
        assert alternate.node_uuid and alternate.resources.memory_mb == 2048
        assert not alternate.claim_id and not alternate.HasField("expires_at")
    states = await stub.ListHostStates(scheduler_pb2.ListHostStatesRequest())
    claimed = {s.host: len(s.pending_claims) for s in states.host_states}
    assert claimed == {h: int(h == selection.primary.host) for h in claimed}


async def _alternate(cloud, stub, flavor: str = "m1.small"):
    request = spec(flavor)
    (selection,) = (await stub.SelectDestinations(request)).selections
    claim_request = scheduler_pb2.ClaimAlternateRequest(
        spec=request.spec,
        instance_uuid=selection.instance_uuid,
        node_uuid=selection.alternates[0].node_uuid,
    )
    claim_request.spec.instance_uuids.append(selection.instance_uuid)
    return selection, claim_request


async def test_claim_alternate_claims_the_node_once_the_primary_failed(cloud):
    for host in ("c1", "c2"):
        await cloud.add_host(host)
    _scheduler, stub = await cloud.start_scheduler()
    selection, request = await _alternate(cloud, stub)
    await stub.ReleaseClaims(
        scheduler_pb2.ReleaseClaimsRequest(claim_ids=[selection.primary.claim_id])
    )

    claim = (await stub.ClaimAlternate(request)).claim

    assert (claim.host, claim.node_uuid) == (selection.alternates[0].host, request.node_uuid)
    assert claim.claim_id.startswith(request.node_uuid + ".") and claim.HasField("expires_at")
    assert claim.instance_uuid == selection.instance_uuid
    (state,) = (
        await stub.ListHostStates(scheduler_pb2.ListHostStatesRequest(host=claim.host))
    ).host_states
    assert [c.claim_id for c in state.pending_claims] == [claim.claim_id]


async def test_claim_alternate_filters_the_node_again(cloud):
    for host in ("c1", "c2"):
        await cloud.add_host(host)
    scheduler, stub = await cloud.start_scheduler()
    selection, request = await _alternate(cloud, stub)
    alternate = selection.alternates[0].host
    await cloud.disable(alternate)
    await eventually(lambda: scheduler.mirror.facts[alternate].service_disabled)

    with pytest.raises(aio.AioRpcError) as err:
        await stub.ClaimAlternate(request)

    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    error = from_rpc_error(err.value)
    assert error.reason == "CLAIM_REFUSED" and error.metadata["filter"] == "ComputeFilter"
    assert f"{alternate}/" in error.message


async def test_claim_alternate_refuses_a_node_whose_room_was_taken(cloud):
    await cloud.add_host("c1", vcpus=4, memory_mb=4096, disk_gb=100)
    await cloud.add_host("c2", vcpus=4, memory_mb=4096, disk_gb=100)
    _scheduler, stub = await cloud.start_scheduler()
    selection, request = await _alternate(cloud, stub, "m1.medium")
    # Another request takes the alternate's room: force it onto that host.
    other = spec(
        "m1.medium", hints=scheduler_pb2.SchedulerHints(force_hosts=[selection.alternates[0].host])
    )
    await stub.SelectDestinations(other)

    with pytest.raises(aio.AioRpcError) as err:
        await stub.ClaimAlternate(request)

    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert from_rpc_error(err.value).reason == "CLAIM_REFUSED"


async def test_claim_alternate_bad_input(cloud):
    await cloud.add_host("c1")
    await cloud.add_host("c2")
    _scheduler, stub = await cloud.start_scheduler()
    _selection, request = await _alternate(cloud, stub)
    unknown = scheduler_pb2.ClaimAlternateRequest()
    unknown.CopyFrom(request)
    unknown.node_uuid = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(aio.AioRpcError) as err:
        await stub.ClaimAlternate(unknown)
    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    for field, value in (("node_uuid", "nope"), ("instance_uuid", "nope")):
        bad = scheduler_pb2.ClaimAlternateRequest()
        bad.CopyFrom(request)
        setattr(bad, field, value)
        with pytest.raises(aio.AioRpcError) as err:
            await stub.ClaimAlternate(bad)
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert field in from_rpc_error(err.value).message or field in str(
            from_rpc_error(err.value).violations
        )


async def test_ram_weigher_spreads_to_the_emptiest_node_and_a_negative_multiplier_packs(cloud):
    await cloud.add_host("small", memory_mb=8192)
    await cloud.add_host("big", memory_mb=65536)
    _, spread = await cloud.start_scheduler(cpu_weight_multiplier=0, disk_weight_multiplier=0)
    response = await spread.SelectDestinations(spec("m1.tiny"))
    assert response.selections[0].primary.host == "big"
    _, pack = await cloud.start_scheduler(
        ram_weight_multiplier=-1.0, cpu_weight_multiplier=0, disk_weight_multiplier=0
    )
    response = await pack.SelectDestinations(spec("m1.tiny"))
    assert response.selections[0].primary.host == "small"


async def test_nothing_fits_answers_resource_exhausted_counting_each_filter(cloud):
    await cloud.add_host("tiny-1", vcpus=1, memory_mb=1024, disk_gb=10)
    await cloud.add_host("tiny-2", vcpus=1, memory_mb=1024, disk_gb=10)
    await cloud.add_host("off")
    await cloud.disable("off")
    scheduler, stub = await cloud.start_scheduler()
    await eventually(lambda: scheduler.mirror.facts["off"].service_disabled)
    with pytest.raises(aio.AioRpcError) as err:
        await stub.SelectDestinations(spec("m1.xlarge"))
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    error = from_rpc_error(err.value)
    assert error.reason == "NO_VALID_HOST"
    assert error.metadata["ComputeFilter"] == "1"
    assert error.metadata["RamFilter"] == "2"
    assert "ComputeFilter removed 1" in error.message and "RamFilter removed 2" in error.message


async def test_a_request_that_cannot_be_placed_whole_leaves_no_claim(cloud):
    # Room for two m1.medium (4 GiB) in all: a request for three places none.
    await cloud.add_host("a", memory_mb=4096 + 512, ram_allocation_ratio=1.0)
    await cloud.add_host("b", memory_mb=4096 + 512, ram_allocation_ratio=1.0)
    _scheduler, stub = await cloud.start_scheduler()
    with pytest.raises(aio.AioRpcError) as err:
        await stub.SelectDestinations(spec("m1.medium", count=3))
    error = from_rpc_error(err.value)
    assert error.metadata["placed"] == "2"
    states = await stub.ListHostStates(scheduler_pb2.ListHostStatesRequest())
    assert [len(s.pending_claims) for s in states.host_states] == [0, 0]
    response = await stub.SelectDestinations(spec("m1.medium", count=2))
    assert sorted(s.primary.host for s in response.selections) == ["a", "b"]
