"""The instances nodes report: their uuids on every node message (get, list, search, watch),
and server-list (ListNodeInstances over every node, filtered by uuid)."""

from __future__ import annotations

import uuid as uuidlib

import grpc
import pytest
from berth.client.errors import from_rpc_error
from berth.v1 import common_pb2, node_pb2
from grpc import aio

from tests.integration.node.support import by_key, instance, report, snapshot
from tests.integration.registry.support import status_of, take

ADDED, MODIFIED, DELETED, SYNCED = (
    common_pb2.EVENT_TYPE_ADDED,
    common_pb2.EVENT_TYPE_MODIFIED,
    common_pb2.EVENT_TYPE_DELETED,
    common_pb2.EVENT_TYPE_SYNCED,
)


async def _all_instances(nodes, page_size: int, **fields) -> tuple[list[node_pb2.Instance], int]:
    """Every instance ListNodeInstances gives for `fields`, page by page; and the pages."""
    seen, token, pages = [], "", 0
    while True:
        page = await nodes.ListNodeInstances(
            node_pb2.ListNodeInstancesRequest(page_size=page_size, page_token=token, **fields)
        )
        seen += list(page.instances)
        pages += 1
        token = page.next_page_token
        if not token:
            return seen, pages


# -- instance uuids on nodes -----------------------------------------------------------------


async def test_a_node_shows_the_uuids_of_its_instances_in_get_list_and_search(nodes):
    vm1, vm2 = instance(claim_id="claim-1"), instance()
    await report(nodes, snapshot("kvm-1", instances=(vm1, vm2)))
    await report(nodes, snapshot("kvm-2"))
    expected = sorted([vm1.uuid, vm2.uuid])

    got = await nodes.GetComputeNode(node_pb2.GetComputeNodeRequest(node=by_key("kvm-1")))
    assert list(got.node.instance_uuids) == expected
    assert list(got.node.claim_ids) == ["claim-1"]
    listed = await nodes.ListComputeNodes(node_pb2.ListComputeNodesRequest())
    assert {n.host: list(n.instance_uuids) for n in listed.nodes} == {
        "kvm-1": expected,
        "kvm-2": [],
    }
    found = await nodes.SearchComputeNodes(
        node_pb2.SearchComputeNodesRequest(nodename_pattern="kvm-1")
    )
    assert [list(n.instance_uuids) for n in found.nodes] == [expected]


async def test_instance_uuids_follow_each_snapshot(nodes):
    vm1, vm2 = instance(), instance()
    await report(nodes, snapshot("kvm-1", instances=(vm1,)))
    await report(nodes, snapshot("kvm-1", sequence=2, instances=(vm2,)))  # vm1 left, vm2 came
    got = await nodes.GetComputeNode(node_pb2.GetComputeNodeRequest(node=by_key("kvm-1")))
    assert list(got.node.instance_uuids) == [vm2.uuid]


async def test_watch_events_carry_the_instance_uuids(nodes):
    vm1, vm2, vm3 = instance(), instance(), instance()
    await report(nodes, snapshot("kvm-1", instances=(vm1,)))
    watch = nodes.WatchComputeNodes(node_pb2.WatchComputeNodesRequest())
    listing = await take(watch, 2)
    assert [e.type for e in listing] == [ADDED, SYNCED]
    assert list(listing[0].node.instance_uuids) == [vm1.uuid]

    await report(nodes, snapshot("kvm-1", sequence=2, instances=(vm1, vm2)))  # a batch write
    await report(nodes, snapshot("kvm-2", instances=(vm3,)))  # a first report
    await nodes.DeleteComputeNode(node_pb2.DeleteComputeNodeRequest(node=by_key("kvm-2")))
    changes = await take(watch, 3)
    assert [(e.type, e.node.host, list(e.node.instance_uuids)) for e in changes] == [
        (MODIFIED, "kvm-1", sorted([vm1.uuid, vm2.uuid])),
        (ADDED, "kvm-2", [vm3.uuid]),
        (DELETED, "kvm-2", [vm3.uuid]),  # the last state the node had
    ]
    watch.cancel()


# -- server-list: every instance, filtered by uuid -------------------------------------------


async def test_without_node_or_host_every_instance_of_every_node_is_listed_in_pages(nodes):
    kvm = [instance("p1") for _ in range(3)]
    bare_metal_a, bare_metal_b = [instance("p2") for _ in range(2)], [instance("p3")]
    await report(nodes, snapshot("kvm-1", instances=tuple(kvm)))
    await report(nodes, snapshot("ironic-1", "bm-a", instances=tuple(bare_metal_a)))
    await report(nodes, snapshot("ironic-1", "bm-b", instances=tuple(bare_metal_b)))
    await report(nodes, snapshot("empty-1"))

    seen, pages = await _all_instances(nodes, page_size=2)

    assert pages == 3
    assert sorted(i.uuid for i in seen) == sorted(i.uuid for i in kvm + bare_metal_a + bare_metal_b)
    where = {i.uuid: (i.host, i.nodename, i.project_id) for i in seen}
    assert where[kvm[0].uuid] == ("kvm-1", "kvm-1", "p1")
    assert where[bare_metal_b[0].uuid] == ("ironic-1", "bm-b", "p3")
    assert all(i.node_uuid for i in seen)


async def test_a_deleted_nodes_instances_are_not_listed(nodes):
    await report(nodes, snapshot("kvm-1", instances=(instance(),)))
    kept = instance()
    await report(nodes, snapshot("kvm-2", instances=(kept,)))
    await nodes.DeleteComputeNode(node_pb2.DeleteComputeNodeRequest(node=by_key("kvm-1")))
    seen, _ = await _all_instances(nodes, page_size=10)
    assert [i.uuid for i in seen] == [kept.uuid]


async def test_instances_are_found_by_uuid_alone_or_within_a_host_or_node(nodes):
    vm1, vm2, vm3 = instance(), instance(), instance()
    await report(nodes, snapshot("kvm-1", instances=(vm1, vm2)))
    await report(nodes, snapshot("kvm-2", instances=(vm3,)))
    unknown = str(uuidlib.uuid4())
    wanted = [vm1.uuid, vm3.uuid.upper(), unknown]  # any spelling of a uuid matches

    anywhere, _ = await _all_instances(nodes, page_size=1, instance_uuids=wanted)
    assert sorted((i.uuid, i.host) for i in anywhere) == sorted(
        [(vm1.uuid, "kvm-1"), (vm3.uuid, "kvm-2")]
    )
    on_host, _ = await _all_instances(nodes, page_size=10, host="kvm-1", instance_uuids=wanted)
    assert [i.uuid for i in on_host] == [vm1.uuid]
    on_node, _ = await _all_instances(
        nodes, page_size=10, node=by_key("kvm-2"), instance_uuids=[vm1.uuid]
    )
    assert on_node == []


async def test_a_page_token_holds_only_for_the_same_uuid_filter(nodes):
    vms = tuple(instance() for _ in range(3))
    await report(nodes, snapshot("kvm-1", instances=vms))
    first = await nodes.ListNodeInstances(
        node_pb2.ListNodeInstancesRequest(page_size=1, instance_uuids=[v.uuid for v in vms])
    )
    other = nodes.ListNodeInstances(
        node_pb2.ListNodeInstancesRequest(
            page_size=1, page_token=first.next_page_token, instance_uuids=[vms[0].uuid]
        )
    )
    assert await status_of(other) is grpc.StatusCode.INVALID_ARGUMENT


async def _invalid_field(coro) -> str:
    with pytest.raises(aio.AioRpcError) as err:
        await coro
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return from_rpc_error(err.value).violations[0].field


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param(
            {"instance_uuids": [str(uuidlib.uuid4()), "not-a-uuid"]},
            "instance_uuids[1]",
            id="bad-uuid",
        ),
        pytest.param(
            {"instance_uuids": [str(uuidlib.uuid4()) for _ in range(1001)]},
            "instance_uuids",
            id="1001-uuids",
        ),
        pytest.param({"node": by_key("kvm-1"), "host": "kvm-1"}, "node", id="node-and-host"),
    ],
)
async def test_bad_instance_filters_are_invalid_naming_the_field(nodes, fields, field):
    await report(nodes, snapshot("kvm-1", instances=(instance(),)))
    request = node_pb2.ListNodeInstancesRequest(**fields)
    assert await _invalid_field(nodes.ListNodeInstances(request)) == field
