"""Hints and groups end to end through the scheduler: zones, aggregates, groups, bare metal."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from berth.v1 import common_pb2, registry_pb2, scheduler_pb2
from grpc import aio

from tests.integration.scheduler.cloud import eventually, spec

ANTI = common_pb2.GROUP_POLICY_ANTI_AFFINITY
AFFINITY = common_pb2.GROUP_POLICY_AFFINITY


async def aggregate(cloud, name: str, hosts: list[str], **metadata: str) -> None:
    await cloud.registry_stub.CreateAggregate(
        registry_pb2.CreateAggregateRequest(name=name, metadata=metadata)
    )
    for host in hosts:
        await cloud.registry_stub.AddAggregateHost(
            registry_pb2.AddAggregateHostRequest(
                aggregate=registry_pb2.AggregateRef(name=name), host=host
            )
        )


async def test_anti_affinity_spreads_a_group_across_hosts_even_over_requests(cloud):
    for host in ("c1", "c2", "c3"):
        await cloud.add_host(host, memory_mb=65536)
    _, stub = await cloud.start_scheduler(max_attempts=1)
    hints = scheduler_pb2.SchedulerHints(group="web", group_policy=ANTI)
    response = await stub.SelectDestinations(spec("m1.tiny", count=2, hints=hints))
    first = {s.primary.host for s in response.selections}
    assert len(first) == 2
    third = await stub.SelectDestinations(spec("m1.tiny", hints=hints))
    assert third.selections[0].primary.host not in first
    with pytest.raises(aio.AioRpcError) as err:  # a fourth member has no host left
        await stub.SelectDestinations(spec("m1.tiny", hints=hints))
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ServerGroupAntiAffinityFilter removed 3" in err.value.details()


async def test_affinity_keeps_a_group_on_one_host_and_a_policy_cannot_change(cloud):
    for host in ("c1", "c2", "c3"):
        await cloud.add_host(host, memory_mb=65536)
    _, stub = await cloud.start_scheduler(max_attempts=1)
    hints = scheduler_pb2.SchedulerHints(group="db", group_policy=AFFINITY)
    response = await stub.SelectDestinations(spec("m1.tiny", count=3, hints=hints, seed=None))
    assert len({s.primary.host for s in response.selections}) == 1
    other = scheduler_pb2.SchedulerHints(group="db", group_policy=ANTI)
    with pytest.raises(aio.AioRpcError) as err:
        await stub.SelectDestinations(spec("m1.tiny", hints=other))
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "has policy affinity" in err.value.details()


async def test_same_aggregate_as_host_keeps_a_move_inside_the_aggregate(cloud):
    for host in ("a1", "a2", "b1"):
        await cloud.add_host(host)
    await aggregate(cloud, "rack-a", ["a1", "a2"])
    await aggregate(cloud, "rack-b", ["b1"])
    scheduler, stub = await cloud.start_scheduler(max_attempts=3)
    await eventually(lambda: scheduler.mirror.facts["a2"].aggregates == ("rack-a",))
    hints = scheduler_pb2.SchedulerHints(same_aggregate_as_host="a1", ignore_hosts=["a1"])
    response = await stub.SelectDestinations(spec("m1.small", hints=hints))
    selection = response.selections[0]
    assert selection.primary.host == "a2" and not selection.alternates


async def test_an_availability_zone_and_extra_specs_pick_their_hosts(cloud):
    for host in ("z1", "z2", "plain"):
        await cloud.add_host(host)
    await aggregate(cloud, "zone-one", ["z1"], availability_zone="az1")
    await aggregate(cloud, "ssd", ["z2"], ssd="true")
    scheduler, stub = await cloud.start_scheduler(max_attempts=1)
    await eventually(lambda: "az1" in scheduler.mirror.zones())
    await eventually(lambda: "ssd" in scheduler.mirror.facts["z2"].aggregate_metadata)
    zoned = await stub.SelectDestinations(spec("m1.tiny", availability_zone="az1"))
    assert zoned.selections[0].primary.host == "z1"
    request = spec("m1.tiny")
    request.spec.flavor.extra_specs["aggregate_instance_extra_specs:ssd"] = "true"
    assert (await stub.SelectDestinations(request)).selections[0].primary.host == "z2"


async def test_same_host_and_different_host_follow_the_instances(cloud):
    await cloud.add_host("c1", memory_mb=65536)
    await cloud.add_host("c2")
    scheduler, stub = await cloud.start_scheduler(max_attempts=1)
    first = (await stub.SelectDestinations(spec("m1.tiny"))).selections[0].primary
    await cloud.place(first.host, first.nodename, first, memory_mb=65536)
    await eventually(lambda: scheduler.mirror.hosts_of([first.instance_uuid]) == {"c1"})
    near = scheduler_pb2.SchedulerHints(same_host=[first.instance_uuid])
    apart = scheduler_pb2.SchedulerHints(different_host=[first.instance_uuid])
    assert (await stub.SelectDestinations(spec("m1.tiny", hints=near))).selections[
        0
    ].primary.host == "c1"
    assert (await stub.SelectDestinations(spec("m1.tiny", hints=apart))).selections[
        0
    ].primary.host == "c2"
    nowhere = scheduler_pb2.SchedulerHints(same_host=[str(uuid.uuid4())])
    with pytest.raises(aio.AioRpcError):
        await stub.SelectDestinations(spec("m1.tiny", hints=nowhere))


async def test_bare_metal_is_only_for_its_resource_class_and_is_claimed_whole(cloud):
    await cloud.add_host("c1", vcpus=4, memory_mb=8192)
    await cloud.add_host(
        "ironic-1",
        nodes=2,
        vcpus=32,
        memory_mb=131072,
        disk_gb=1000,
        hypervisor_type="ironic",
        resource_class="CUSTOM_BAREMETAL_GOLD",
        whole_machine=True,
        reserved_memory_mb=0,
    )
    _, stub = await cloud.start_scheduler(max_attempts=1)
    # A VM flavor never lands on bare metal, however much better the servers weigh.
    vms = (await stub.SelectDestinations(spec("m1.tiny", count=2))).selections
    assert {s.primary.host for s in vms} == {"c1"}
    with pytest.raises(aio.AioRpcError) as err:
        await stub.SelectDestinations(spec("m1.tiny", hypervisor_type="ironic"))
    assert "ResourceClassFilter removed 2" in err.value.details()

    gold = scheduler_pb2.SelectDestinationsRequest(
        spec=scheduler_pb2.RequestSpec(
            flavor=scheduler_pb2.Flavor(
                name="baremetal",
                vcpus=1,
                memory_mb=1024,
                root_gb=10,
                extra_specs={"resources:CUSTOM_BAREMETAL_GOLD": "1"},
            ),
            num_instances=2,
        )
    )
    claims = [s.primary for s in (await stub.SelectDestinations(gold)).selections]
    assert {c.host for c in claims} == {"ironic-1"} and len({c.node_uuid for c in claims}) == 2
    assert all(c.resources.memory_mb == 131072 and c.resources.vcpus == 32 for c in claims)
    gold.spec.num_instances = 1
    with pytest.raises(aio.AioRpcError) as err:
        await stub.SelectDestinations(gold)
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ResourceClassFilter removed 3" in err.value.details()


async def test_force_hosts_and_ignore_hosts_narrow_the_candidates(cloud):
    for host in ("c1", "c2", "c3"):
        await cloud.add_host(host)
    _, stub = await cloud.start_scheduler(max_attempts=3)
    forced = scheduler_pb2.SchedulerHints(force_hosts=["c3"])
    selection = (await stub.SelectDestinations(spec("m1.tiny", hints=forced))).selections[0]
    assert selection.primary.host == "c3" and not selection.alternates
    ignored = scheduler_pb2.SchedulerHints(ignore_hosts=["c1", "c2"])
    selection = (await stub.SelectDestinations(spec("m1.tiny", hints=ignored))).selections[0]
    assert selection.primary.host == "c3"
    nothing = scheduler_pb2.SchedulerHints(force_hosts=["c1"], ignore_hosts=["c1"])
    with pytest.raises(aio.AioRpcError) as err:
        await stub.SelectDestinations(spec("m1.tiny", hints=nothing))
    assert "SchedulerHints removed 3" in err.value.details()


async def test_concurrent_affinity_members_over_two_replicas_all_land_on_one_host(cloud):
    # Each replica sees the others' members only once their claims' events arrive: without
    # one point of truth per group, simultaneous first members each pick their own host.
    for host in ("c1", "c2", "c3", "c4", "c5"):
        await cloud.add_host(host, memory_mb=65536)
    replicas = [
        (await cloud.start_scheduler(max_attempts=3, host_subset_size=5))[1] for _ in range(2)
    ]
    hints = scheduler_pb2.SchedulerHints(group="db", group_policy=AFFINITY)
    calls = [
        replicas[i % 2].SelectDestinations(spec("m1.tiny", hints=hints, seed=None))
        for i in range(12)
    ]
    responses = await asyncio.gather(*calls)
    hosts = {r.selections[0].primary.host for r in responses}
    assert len(hosts) == 1, hosts
    # An alternate elsewhere would place a member apart: none is offered.
    assert not [a for r in responses for a in r.selections[0].alternates], responses[0]


async def test_a_zone_made_while_a_request_names_it_is_waited_for_not_refused(cloud):
    """Read your writes: a boot sent right after its zone was made may reach the scheduler
    before the zone's events do; it waits for them instead of hearing "unknown zone"."""
    await cloud.add_host("late-1")
    scheduler, stub = await cloud.start_scheduler(max_attempts=1)
    follower = scheduler.keeper.registry_follower
    boot = asyncio.ensure_future(
        stub.SelectDestinations(spec("m1.tiny", availability_zone="az-new"))
    )
    await eventually(lambda: follower._next is not None)  # the request waits for events
    await aggregate(cloud, "new-zone", ["late-1"], availability_zone="az-new")
    placed = await boot
    assert placed.selections[0].primary.host == "late-1"
