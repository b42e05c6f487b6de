"""WatchComputeNodes: a listing at one revision, then every change, resumable, across replicas."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from berth.v1 import common_pb2, node_pb2, node_pb2_grpc

from tests.integration.node.support import by_key, report, snapshot
from tests.integration.registry.support import take

ADDED, MODIFIED, DELETED, SYNCED = (
    common_pb2.EVENT_TYPE_ADDED,
    common_pb2.EVENT_TYPE_MODIFIED,
    common_pb2.EVENT_TYPE_DELETED,
    common_pb2.EVENT_TYPE_SYNCED,
)


async def test_a_watch_lists_then_syncs_then_streams_only_real_changes(nodes):
    await report(nodes, snapshot("kvm-1"))
    watch = nodes.WatchComputeNodes(node_pb2.WatchComputeNodesRequest())
    listing = await take(watch, 2)
    assert [e.type for e in listing] == [ADDED, SYNCED] and listing[0].node.host == "kvm-1"
    await report(nodes, snapshot("kvm-1", sequence=2))  # unchanged: no event
    await report(nodes, snapshot("kvm-1", sequence=3, vcpus=32))
    await report(nodes, snapshot("kvm-2"))
    await nodes.DeleteComputeNode(node_pb2.DeleteComputeNodeRequest(node=by_key("kvm-2")))
    changes = await take(watch, 3)
    assert [(e.type, e.node.host) for e in changes] == [
        (MODIFIED, "kvm-1"),
        (ADDED, "kvm-2"),
        (DELETED, "kvm-2"),
    ]
    assert changes[0].node.total.vcpus == 32 and changes[0].node.generation == 2
    assert [e.revision for e in changes] == sorted(e.revision for e in changes)
    watch.cancel()


async def test_a_batched_listing_carries_many_nodes_per_message(nodes):
    for index in range(5):
        await report(nodes, snapshot(f"kvm-{index}"))
    request = node_pb2.WatchComputeNodesRequest(listing_batch=2)
    watch = nodes.WatchComputeNodes(request)
    listing = await take(watch, 4)
    assert [(e.type, len(e.nodes)) for e in listing] == [
        (ADDED, 2),
        (ADDED, 2),
        (ADDED, 1),
        (SYNCED, 0),
    ]
    assert sorted(n.host for e in listing for n in e.nodes) == [f"kvm-{i}" for i in range(5)]
    assert len({e.revision for e in listing}) == 1  # one listing, at one revision
    await report(nodes, snapshot("kvm-0", sequence=2, vcpus=8))
    (change,) = await take(watch, 1)  # changes stay one per event
    assert change.type == MODIFIED and change.node.total.vcpus == 8 and not change.nodes
    watch.cancel()


@pytest.mark.parametrize("batch", [-1, 1001])
async def test_a_listing_batch_out_of_range_is_invalid(nodes, batch):
    watch = nodes.WatchComputeNodes(node_pb2.WatchComputeNodesRequest(listing_batch=batch))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await take(watch, 1)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "listing_batch" in err.value.details()


async def test_a_watch_resumes_after_a_revision(nodes):
    await report(nodes, snapshot("kvm-1"))
    first = nodes.WatchComputeNodes(node_pb2.WatchComputeNodesRequest())
    synced = (await take(first, 2))[-1].revision
    first.cancel()
    await report(nodes, snapshot("kvm-1", sequence=2, vcpus=8))
    resumed = nodes.WatchComputeNodes(node_pb2.WatchComputeNodesRequest(start_revision=synced))
    (event,) = await take(resumed, 1)
    assert event.type == MODIFIED and event.node.total.vcpus == 8
    resumed.cancel()


async def test_a_revision_from_the_future_is_invalid(nodes):
    watch = nodes.WatchComputeNodes(node_pb2.WatchComputeNodesRequest(start_revision=10**9))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await take(watch, 1)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_watchers_of_two_replicas_see_every_change_of_both(database, start_node):
    if database.backend == "sqlite":
        pytest.skip("replicas share a server database; SQLite is the single-process default")
    a, b = await start_node(), await start_node()
    async with (
        grpc.aio.insecure_channel(a.address) as ca,
        grpc.aio.insecure_channel(b.address) as cb,
    ):
        stub_a, stub_b = node_pb2_grpc.NodeServiceStub(ca), node_pb2_grpc.NodeServiceStub(cb)
        watch_a = stub_a.WatchComputeNodes(node_pb2.WatchComputeNodesRequest())
        watch_b = stub_b.WatchComputeNodes(node_pb2.WatchComputeNodesRequest())
        await take(watch_a, 1)
        await take(watch_b, 1)
        writes = [report(stub_a if i % 2 else stub_b, snapshot(f"h{i}")) for i in range(40)]
        await asyncio.gather(*writes)
        seen_a = await take(watch_a, 40)
        seen_b = await take(watch_b, 40)
        for seen in (seen_a, seen_b):
            assert sorted(e.node.host for e in seen) == sorted(f"h{i}" for i in range(40))
            revisions = [e.revision for e in seen]
            assert revisions == sorted(revisions) and len(set(revisions)) == 40
        watch_a.cancel()
        watch_b.cancel()
