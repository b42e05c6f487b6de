"""WatchServices: a listing at one revision, then every change, resumable, across replicas."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from berth.v1 import common_pb2, registry_pb2, registry_pb2_grpc
from grpc import aio

from services.registry.store import repository as repo
from tests.integration.registry.support import key, register, take


async def test_a_watch_lists_everything_then_syncs_then_streams_changes(stub):
    await register(stub, "a")
    await stub.CreateAggregate(registry_pb2.CreateAggregateRequest(name="rack-1"))
    watch = stub.WatchServices(registry_pb2.WatchServicesRequest())
    listing = await take(watch, 3)
    assert [e.type for e in listing] == [
        common_pb2.EVENT_TYPE_ADDED,
        common_pb2.EVENT_TYPE_ADDED,
        common_pb2.EVENT_TYPE_SYNCED,
    ]
    assert listing[0].service.host == "a" and listing[1].aggregate.name == "rack-1"
    synced_at = listing[2].revision
    await stub.UpdateService(registry_pb2.UpdateServiceRequest(service=key("a"), disabled=True))
    (change,) = await take(watch, 1)
    assert change.type == common_pb2.EVENT_TYPE_MODIFIED and change.service.disabled
    assert change.revision == synced_at + 1
    watch.cancel()


async def test_a_batched_listing_carries_many_services_per_message(stub):
    for host in ("a", "b", "c"):
        await register(stub, host)
    await stub.CreateAggregate(registry_pb2.CreateAggregateRequest(name="rack-1"))
    watch = stub.WatchServices(registry_pb2.WatchServicesRequest(listing_batch=2))
    listing = await take(watch, 4)
    shapes = [(e.type, len(e.services), len(e.aggregates)) for e in listing]
    added, synced = common_pb2.EVENT_TYPE_ADDED, common_pb2.EVENT_TYPE_SYNCED
    assert shapes == [(added, 2, 0), (added, 1, 0), (added, 0, 1), (synced, 0, 0)]
    assert sorted(s.host for e in listing for s in e.services) == ["a", "b", "c"]
    assert listing[2].aggregates[0].name == "rack-1"
    watch.cancel()


async def test_a_watch_resumed_from_a_revision_gets_what_it_missed(stub):
    await register(stub, "a")
    watch = stub.WatchServices(registry_pb2.WatchServicesRequest())
    synced = (await take(watch, 2))[-1].revision
    watch.cancel()
    await register(stub, "b")
    await stub.DeleteService(registry_pb2.DeleteServiceRequest(service=key("a")))
    resumed = stub.WatchServices(registry_pb2.WatchServicesRequest(start_revision=synced))
    added, deleted = await take(resumed, 2)
    assert (added.type, added.service.host) == (common_pb2.EVENT_TYPE_ADDED, "b")
    assert (deleted.type, deleted.service.host) == (common_pb2.EVENT_TYPE_DELETED, "a")
    assert deleted.service.HasField("deleted_at")
    resumed.cancel()


async def test_a_revision_older_than_the_history_is_refused_with_a_way_out(stub, registry):
    for host in ("a", "b", "c"):
        await register(stub, host)
    async with registry.feed._sessions() as session, session.begin():
        await repo.CHANGES.compact(session, keep=1)
    watch = stub.WatchServices(registry_pb2.WatchServicesRequest(start_revision=1))
    with pytest.raises(aio.AioRpcError) as err:
        await take(watch, 1)
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "watch again from 0" in err.value.details()


async def test_a_revision_from_the_future_is_invalid(stub):
    watch = stub.WatchServices(registry_pb2.WatchServicesRequest(start_revision=999))
    with pytest.raises(aio.AioRpcError) as err:
        await take(watch, 1)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_two_replicas_on_one_database_both_deliver_every_change(start, database):
    if database.backend == "sqlite":
        pytest.skip("replicas share a server database; SQLite is the single-process default")
    replicas = [await start(), await start()]
    channels = [aio.insecure_channel(r.address) for r in replicas]
    stubs = [registry_pb2_grpc.RegistryServiceStub(c) for c in channels]
    watches = [s.WatchServices(registry_pb2.WatchServicesRequest()) for s in stubs]
    for w in watches:
        assert (await take(w, 1))[0].type == common_pb2.EVENT_TYPE_SYNCED
    # 40 registrations and 40 updates, half through each replica, concurrently.
    changes = 40
    await asyncio.gather(*(register(stubs[i % 2], f"h{i}") for i in range(changes)))
    await asyncio.gather(
        *(
            stubs[(i + 1) % 2].UpdateService(
                registry_pb2.UpdateServiceRequest(service=key(f"h{i}"), disabled=True)
            )
            for i in range(changes)
        )
    )
    for w in watches:
        events = await take(w, 2 * changes)
        revisions = [e.revision for e in events]
        assert revisions == list(range(revisions[0], revisions[0] + 2 * changes)), (
            "a gap or a reorder"
        )
        assert sorted(
            e.service.host for e in events if e.type == common_pb2.EVENT_TYPE_ADDED
        ) == sorted(f"h{i}" for i in range(changes))
        w.cancel()
    for c in channels:
        await c.close()
