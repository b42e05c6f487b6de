"""The hypervisor API: list, show, search, stats, servers, host usage, delete."""

from __future__ import annotations

import grpc
from berth.v1 import node_pb2

from tests.integration.node.support import by_key, instance, report, snapshot
from tests.integration.registry.support import status_of


async def test_nodes_list_in_pages_and_by_host(nodes):
    for i in range(5):
        await report(nodes, snapshot(f"kvm-{i}"))
    await report(nodes, snapshot("ironic-1", "bm-a"))
    await report(nodes, snapshot("ironic-1", "bm-b"))
    seen, token = [], ""
    while True:
        page = await nodes.ListComputeNodes(
            node_pb2.ListComputeNodesRequest(page_size=3, page_token=token)
        )
        seen += [n.nodename for n in page.nodes]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 7 and len(set(seen)) == 7
    ironic = await nodes.ListComputeNodes(node_pb2.ListComputeNodesRequest(host="ironic-1"))
    assert sorted(n.nodename for n in ironic.nodes) == ["bm-a", "bm-b"]


async def test_a_node_is_shown_by_uuid_or_key_and_unknown_is_not_found(nodes):
    created = await report(nodes, snapshot("kvm-1"))
    by_uuid = await nodes.GetComputeNode(
        node_pb2.GetComputeNodeRequest(node=node_pb2.ComputeNodeRef(uuid=created.node_uuid))
    )
    assert by_uuid.node.host == "kvm-1"
    missing = nodes.GetComputeNode(node_pb2.GetComputeNodeRequest(node=by_key("nope")))
    assert await status_of(missing) is grpc.StatusCode.NOT_FOUND


async def test_search_matches_a_substring_literally(nodes):
    await report(nodes, snapshot("h", "rack1_node%1"))
    await report(nodes, snapshot("h", "rack1xnode-2"))
    found = await nodes.SearchComputeNodes(
        node_pb2.SearchComputeNodesRequest(nodename_pattern="1_node%")
    )
    assert [n.nodename for n in found.nodes] == ["rack1_node%1"]
    both = await nodes.SearchComputeNodes(
        node_pb2.SearchComputeNodesRequest(nodename_pattern="rack1")
    )
    assert len(both.nodes) == 2


async def test_statistics_sum_every_live_node(nodes):
    await report(nodes, snapshot("a", instances=(instance(vcpus=4, memory_mb=1024, disk_gb=10),)))
    await report(nodes, snapshot("b", vcpus=8, memory_mb=8192, disk_gb=100))
    stats = await nodes.GetStatistics(node_pb2.GetStatisticsRequest())
    assert stats.count == 2
    assert (stats.total.vcpus, stats.total.memory_mb, stats.total.disk_gb) == (24, 40960, 600)
    assert (stats.used.vcpus, stats.used.memory_mb, stats.used.disk_gb) == (4, 1024 + 1024, 10)
    assert stats.running_vms == 1 and stats.free_ram_mb == 40960 - 2048


async def test_node_servers_by_node_and_by_host(nodes):
    vm1, vm2, vm3 = instance("p1"), instance("p2"), instance("p1")
    await report(nodes, snapshot("ironic-1", "bm-a", instances=(vm1,)))
    await report(nodes, snapshot("ironic-1", "bm-b", instances=(vm2, vm3)))
    one = await nodes.ListNodeInstances(
        node_pb2.ListNodeInstancesRequest(node=by_key("ironic-1", "bm-b"))
    )
    assert sorted(i.uuid for i in one.instances) == sorted([vm2.uuid, vm3.uuid])
    assert all(i.nodename == "bm-b" and i.host == "ironic-1" for i in one.instances)
    every = await nodes.ListNodeInstances(
        node_pb2.ListNodeInstancesRequest(host="ironic-1", page_size=2)
    )
    assert len(every.instances) == 2 and every.next_page_token
    rest = await nodes.ListNodeInstances(
        node_pb2.ListNodeInstancesRequest(
            host="ironic-1", page_size=2, page_token=every.next_page_token
        )
    )
    assert len(rest.instances) == 1 and not rest.next_page_token


async def test_host_usage_has_total_used_now_used_max_and_each_project(nodes):
    vms = (
        instance("alpha", vcpus=2, memory_mb=2048, disk_gb=20),
        instance("alpha", vcpus=1, memory_mb=512, disk_gb=5),
        instance("beta", vcpus=4, memory_mb=4096, disk_gb=40),
    )
    await report(nodes, snapshot("kvm-1", instances=vms))
    usage = await nodes.GetHostUsage(node_pb2.GetHostUsageRequest(host="kvm-1"))
    assert (usage.total.vcpus, usage.total.memory_mb, usage.total.disk_gb) == (16, 32768, 500)
    # used_now includes the reserved memory; used_max is what the instances were given.
    assert (usage.used_now.vcpus, usage.used_now.memory_mb, usage.used_now.disk_gb) == (7, 7168, 65)
    assert (usage.used_max.vcpus, usage.used_max.memory_mb, usage.used_max.disk_gb) == (7, 6656, 65)
    per_project = {
        p.project_id: (p.resources.vcpus, p.resources.memory_mb, p.resources.disk_gb)
        for p in usage.projects
    }
    assert per_project == {"alpha": (3, 2560, 25), "beta": (4, 4096, 40)}
    assert usage.instance_count == 3
    unknown = nodes.GetHostUsage(node_pb2.GetHostUsageRequest(host="nowhere"))
    assert await status_of(unknown) is grpc.StatusCode.NOT_FOUND


async def test_deleting_a_node_forgets_it_and_its_instances(nodes):
    await report(nodes, snapshot("kvm-1", instances=(instance(),)))
    await nodes.DeleteComputeNode(node_pb2.DeleteComputeNodeRequest(node=by_key("kvm-1")))
    assert (
        await status_of(nodes.GetComputeNode(node_pb2.GetComputeNodeRequest(node=by_key("kvm-1"))))
        is grpc.StatusCode.NOT_FOUND
    )
    assert (await nodes.GetStatistics(node_pb2.GetStatisticsRequest())).running_vms == 0
    again = nodes.DeleteComputeNode(node_pb2.DeleteComputeNodeRequest(node=by_key("kvm-1")))
    assert await status_of(again) is grpc.StatusCode.NOT_FOUND


async def test_a_hosts_nodes_are_deleted_only_without_instances(nodes):
    await report(nodes, snapshot("ironic-1", "bm-a", instances=(instance(),)))
    await report(nodes, snapshot("ironic-1", "bm-b"))
    refused = nodes.DeleteHostNodes(node_pb2.DeleteHostNodesRequest(host="ironic-1"))
    assert await status_of(refused) is grpc.StatusCode.FAILED_PRECONDITION
    assert len((await nodes.ListComputeNodes(node_pb2.ListComputeNodesRequest())).nodes) == 2
    await report(nodes, snapshot("ironic-1", "bm-a", sequence=2))  # the instance is gone
    deleted = await nodes.DeleteHostNodes(node_pb2.DeleteHostNodesRequest(host="ironic-1"))
    assert deleted.deleted == 2
    assert not (await nodes.ListComputeNodes(node_pb2.ListComputeNodesRequest())).nodes
