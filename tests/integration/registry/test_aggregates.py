"""Host aggregates and availability zones."""

from __future__ import annotations

import asyncio

import grpc
from berth.v1 import host_pb2, registry_pb2

from tests.integration.registry.support import key, register, status_of


def ref(name: str) -> registry_pb2.AggregateRef:
    return registry_pb2.AggregateRef(name=name)


async def test_a_host_in_no_zoned_aggregate_is_in_the_default_zone(stub, hosts):
    await register(stub, "c1")
    await register(stub, "c1", "berth-node")
    listed = (await hosts.ListHosts(host_pb2.ListHostsRequest())).hosts
    assert sorted((h.host_name, h.service, h.zone) for h in listed) == [
        ("c1", "compute", "nova"),
        ("c1", "node", "internal"),
    ]


async def test_a_zoned_aggregate_puts_its_hosts_in_the_zone(stub, hosts):
    await register(stub, "c1")
    await register(stub, "c2")
    created = (
        await stub.CreateAggregate(
            registry_pb2.CreateAggregateRequest(name="rack-1", availability_zone="az1")
        )
    ).aggregate
    assert created.availability_zone == "az1" and created.metadata["availability_zone"] == "az1"
    agg = (
        await stub.AddAggregateHost(
            registry_pb2.AddAggregateHostRequest(aggregate=ref("rack-1"), host="c1")
        )
    ).aggregate
    assert list(agg.hosts) == ["c1"]
    service = (await stub.GetService(registry_pb2.GetServiceRequest(service=key("c1")))).service
    assert service.availability_zone == "az1"
    in_zone = (await hosts.ListHosts(host_pb2.ListHostsRequest(zone="az1"))).hosts
    assert [h.host_name for h in in_zone] == ["c1"]


async def test_a_host_can_be_in_one_zone_only(stub):
    await register(stub, "c1")
    await stub.CreateAggregate(
        registry_pb2.CreateAggregateRequest(name="a", availability_zone="az1")
    )
    await stub.CreateAggregate(
        registry_pb2.CreateAggregateRequest(name="b", availability_zone="az2")
    )
    await stub.CreateAggregate(registry_pb2.CreateAggregateRequest(name="plain"))
    await stub.AddAggregateHost(registry_pb2.AddAggregateHostRequest(aggregate=ref("a"), host="c1"))
    await stub.AddAggregateHost(
        registry_pb2.AddAggregateHostRequest(aggregate=ref("plain"), host="c1")
    )
    code = await status_of(
        stub.AddAggregateHost(registry_pb2.AddAggregateHostRequest(aggregate=ref("b"), host="c1"))
    )
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    code = await status_of(
        stub.SetAggregateMetadata(
            registry_pb2.SetAggregateMetadataRequest(
                aggregate=ref("plain"), metadata={"availability_zone": "az2"}
            )
        )
    )
    assert code is grpc.StatusCode.FAILED_PRECONDITION


async def test_duplicates_unknown_hosts_and_non_members_are_refused(stub):
    await register(stub, "c1")
    await stub.CreateAggregate(registry_pb2.CreateAggregateRequest(name="a"))
    assert (
        await status_of(stub.CreateAggregate(registry_pb2.CreateAggregateRequest(name="a")))
        is grpc.StatusCode.ALREADY_EXISTS
    )
    add = registry_pb2.AddAggregateHostRequest(aggregate=ref("a"), host="ghost")
    assert await status_of(stub.AddAggregateHost(add)) is grpc.StatusCode.NOT_FOUND
    remove = registry_pb2.RemoveAggregateHostRequest(aggregate=ref("a"), host="c1")
    assert await status_of(stub.RemoveAggregateHost(remove)) is grpc.StatusCode.NOT_FOUND
    await stub.AddAggregateHost(registry_pb2.AddAggregateHostRequest(aggregate=ref("a"), host="c1"))
    again = registry_pb2.AddAggregateHostRequest(aggregate=ref("a"), host="c1")
    assert await status_of(stub.AddAggregateHost(again)) is grpc.StatusCode.ALREADY_EXISTS


async def test_an_aggregate_with_hosts_cannot_be_deleted_until_they_leave(stub):
    await register(stub, "c1")
    await stub.CreateAggregate(registry_pb2.CreateAggregateRequest(name="a"))
    await stub.AddAggregateHost(registry_pb2.AddAggregateHostRequest(aggregate=ref("a"), host="c1"))
    delete = registry_pb2.DeleteAggregateRequest(aggregate=ref("a"))
    assert await status_of(stub.DeleteAggregate(delete)) is grpc.StatusCode.FAILED_PRECONDITION
    await stub.RemoveAggregateHost(
        registry_pb2.RemoveAggregateHostRequest(aggregate=ref("a"), host="c1")
    )
    await stub.DeleteAggregate(delete)
    assert list((await stub.ListAggregates(registry_pb2.ListAggregatesRequest())).aggregates) == []
    # The name is free again once deleted.
    await stub.CreateAggregate(registry_pb2.CreateAggregateRequest(name="a"))


async def test_metadata_is_set_and_an_empty_value_removes_a_key(stub):
    await stub.CreateAggregate(
        registry_pb2.CreateAggregateRequest(name="a", metadata={"ssd": "true", "gpu": "1"})
    )
    agg = (
        await stub.SetAggregateMetadata(
            registry_pb2.SetAggregateMetadataRequest(
                aggregate=ref("a"), metadata={"gpu": "", "net": "25g"}
            )
        )
    ).aggregate
    assert dict(agg.metadata) == {"ssd": "true", "net": "25g"}


async def test_update_renames_and_rezones_an_aggregate_and_its_hosts_follow(stub):
    await register(stub, "c1")
    await stub.CreateAggregate(registry_pb2.CreateAggregateRequest(name="rack-1"))
    await stub.CreateAggregate(
        registry_pb2.CreateAggregateRequest(name="taken", availability_zone="az9")
    )
    await stub.AddAggregateHost(
        registry_pb2.AddAggregateHostRequest(aggregate=ref("rack-1"), host="c1")
    )
    updated = (
        await stub.UpdateAggregate(
            registry_pb2.UpdateAggregateRequest(
                aggregate=ref("rack-1"), name="rack-2", availability_zone="az1"
            )
        )
    ).aggregate
    assert (updated.name, updated.availability_zone) == ("rack-2", "az1")
    service = (await stub.GetService(registry_pb2.GetServiceRequest(service=key("c1")))).service
    assert service.availability_zone == "az1"
    # The zone cleared (an empty value), the name kept.
    cleared = (
        await stub.UpdateAggregate(
            registry_pb2.UpdateAggregateRequest(aggregate=ref("rack-2"), availability_zone="")
        )
    ).aggregate
    assert (cleared.name, cleared.availability_zone) == ("rack-2", "")
    service = (await stub.GetService(registry_pb2.GetServiceRequest(service=key("c1")))).service
    assert service.availability_zone == "nova"

    refusals = [
        (
            registry_pb2.UpdateAggregateRequest(aggregate=ref("rack-2"), name="taken"),
            "ALREADY_EXISTS",
        ),
        (registry_pb2.UpdateAggregateRequest(aggregate=ref("rack-2")), "INVALID_ARGUMENT"),
        (registry_pb2.UpdateAggregateRequest(aggregate=ref("nope"), name="x"), "NOT_FOUND"),
    ]
    for request, code in refusals:
        assert (await status_of(stub.UpdateAggregate(request))).name == code
    listed = (await stub.ListAggregates(registry_pb2.ListAggregatesRequest())).aggregates
    assert sorted(a.name for a in listed) == ["rack-2", "taken"]  # nothing half-written


async def test_an_aggregate_is_named_by_its_integer_id_too(stub):
    made = (await stub.CreateAggregate(registry_pb2.CreateAggregateRequest(name="by-id"))).aggregate
    assert made.id > 0
    found = await stub.GetAggregate(
        registry_pb2.GetAggregateRequest(aggregate=registry_pb2.AggregateRef(id=made.id))
    )
    assert (found.aggregate.uuid, found.aggregate.id) == (made.uuid, made.id)
    # An id no row can have names nothing (and never reaches the database).
    for impossible in (0, -1, 2**31, 2**63 - 1, -(2**63)):
        code = await status_of(
            stub.GetAggregate(
                registry_pb2.GetAggregateRequest(aggregate=registry_pb2.AggregateRef(id=impossible))
            )
        )
        assert code is grpc.StatusCode.NOT_FOUND, impossible


async def test_concurrent_metadata_changes_of_one_aggregate_all_land(stub):
    await stub.CreateAggregate(registry_pb2.CreateAggregateRequest(name="busy"))
    await asyncio.gather(
        *(
            stub.SetAggregateMetadata(
                registry_pb2.SetAggregateMetadataRequest(
                    aggregate=ref("busy"), metadata={"k": str(i), f"own-{i}": "x"}
                )
            )
            for i in range(8)
        )
    )
    metadata = (
        await stub.GetAggregate(registry_pb2.GetAggregateRequest(aggregate=ref("busy")))
    ).aggregate.metadata
    assert {f"own-{i}" for i in range(8)} <= set(metadata) and metadata["k"] in {
        str(i) for i in range(8)
    }
