"""NodeClient and ComputeClient build the right requests, page, and raise typed errors."""

from __future__ import annotations

import grpc
import pytest
from berth.client import ComputeClient, NodeClient, errors
from berth.client.node import node_ref
from berth.v1 import common_pb2, host_pb2
from berth.v1 import compute_pb2 as cpb
from berth.v1 import node_pb2 as pb
from client_fakes import FakeChannel, FakeRpcError, FakeStreamCall

UUID = "3d0c5a8e-7b6f-4e1d-9c2b-1a2b3c4d5e6f"
KEY = pb.ComputeNodeRef(key=pb.ComputeNodeKey(host="h1", nodename="n1"))


def node_client(**answers):
    channel = FakeChannel(**answers)
    return NodeClient(channel, target="127.0.0.1:50052", timeout=5.0), channel


def compute_client(**answers):
    channel = FakeChannel(**answers)
    return ComputeClient(channel, target="127.0.0.1:50054", timeout=5.0), channel


def sent(channel):
    return [request for _, request, _ in channel.calls]


# -- node refs -------------------------------------------------------------------------------


def test_a_node_is_named_by_uuid_or_by_host_and_nodename():
    assert node_ref(uuid=UUID) == pb.ComputeNodeRef(uuid=UUID)
    assert node_ref(host="h1", nodename="n1") == KEY


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"host": "h1"}, {"nodename": "n1"}, {"uuid": UUID, "host": "h1", "nodename": "n1"}],
)
def test_a_node_ref_needs_exactly_a_uuid_or_a_host_and_nodename(kwargs):
    with pytest.raises(errors.InvalidArgument):
        node_ref(**kwargs)


# -- NodeClient ------------------------------------------------------------------------------


def test_list_nodes_pages_through_with_the_host_filter_and_the_clients_deadline():
    pages = [
        pb.ListComputeNodesResponse(nodes=[pb.ComputeNode(nodename="a")], next_page_token="t1"),
        pb.ListComputeNodesResponse(nodes=[pb.ComputeNode(nodename="b")]),
    ]
    client, channel = node_client(ListComputeNodes=pages)

    names = [node.nodename for node in client.list_nodes(host="h1", page_size=1)]

    assert names == ["a", "b"]
    assert [(r.host, r.page_size, r.page_token) for r in sent(channel)] == [
        ("h1", 1, ""),
        ("h1", 1, "t1"),
    ]
    assert {timeout for _, _, timeout in channel.calls} == {5.0}


def test_list_nodes_fetches_nothing_until_iterated():
    client, channel = node_client(ListComputeNodes=pb.ListComputeNodesResponse())

    nodes = client.list_nodes()

    assert channel.calls == []
    assert list(nodes) == []


@pytest.mark.parametrize(
    ("kwargs", "ref"),
    [({"uuid": UUID}, pb.ComputeNodeRef(uuid=UUID)), ({"host": "h1", "nodename": "n1"}, KEY)],
    ids=["uuid", "host and nodename"],
)
def test_get_node_sends_the_ref_and_returns_the_node(kwargs, ref):
    client, channel = node_client(
        GetComputeNode=pb.GetComputeNodeResponse(node=pb.ComputeNode(uuid=UUID))
    )

    assert client.get_node(**kwargs).uuid == UUID
    assert sent(channel)[0].node == ref


def test_search_nodes_sends_the_pattern_and_pages():
    pages = [
        pb.SearchComputeNodesResponse(nodes=[pb.ComputeNode(nodename="bm-0")], next_page_token="x"),
        pb.SearchComputeNodesResponse(nodes=[pb.ComputeNode(nodename="bm-1")]),
    ]
    client, channel = node_client(SearchComputeNodes=pages)

    assert [n.nodename for n in client.search_nodes("bm")] == ["bm-0", "bm-1"]
    assert [(r.nodename_pattern, r.page_token) for r in sent(channel)] == [("bm", ""), ("bm", "x")]


def test_statistics_returns_the_response():
    stats = pb.GetStatisticsResponse(count=3, total=common_pb2.Resources(vcpus=48))
    client, _ = node_client(GetStatistics=stats)

    assert client.statistics() == stats


@pytest.mark.parametrize(
    ("kwargs", "fields"),
    [
        ({"uuid": UUID}, {"node": pb.ComputeNodeRef(uuid=UUID), "host": ""}),
        ({"host": "h1", "nodename": "n1"}, {"node": KEY, "host": ""}),
        ({"host": "h1"}, {"node": pb.ComputeNodeRef(), "host": "h1"}),
        ({}, {"node": pb.ComputeNodeRef(), "host": ""}),
        (
            {"host": "h1", "instance_uuids": [UUID]},
            {"host": "h1", "instance_uuids": [UUID]},
        ),
    ],
    ids=["one node by uuid", "one node by key", "every node of a host", "every node", "by uuid"],
)
def test_node_instances_lists_one_node_a_hosts_nodes_or_every_node(kwargs, fields):
    client, channel = node_client(
        ListNodeInstances=pb.ListNodeInstancesResponse(instances=[pb.Instance(uuid="i1")])
    )

    assert [i.uuid for i in client.node_instances(**kwargs)] == ["i1"]
    request = sent(channel)[0]
    for name, value in fields.items():
        assert getattr(request, name) == value


def instances_named(request: pb.ListNodeInstancesRequest) -> pb.ListNodeInstancesResponse:
    """The node service's answer for web (one instance), twin (two) and nothing else."""
    by_name = {"web": ["i-web"], "twin": ["i-twin-b", "i-twin-a"]}
    uuids = by_name.get(request.name, [])
    return pb.ListNodeInstancesResponse(instances=[pb.Instance(uuid=u) for u in uuids])


def test_find_instance_takes_a_uuid_as_it_is_without_asking():
    client, channel = node_client(ListNodeInstances=instances_named)

    assert client.find_instance(f" {UUID} ") == UUID
    assert channel.calls == []


def test_find_instance_takes_a_name_only_one_instance_has():
    client, channel = node_client(ListNodeInstances=instances_named)

    assert client.find_instance("web") == "i-web"
    assert sent(channel)[0].name == "web"


def test_find_instance_names_every_uuid_of_a_name_several_instances_have():
    client, _ = node_client(ListNodeInstances=instances_named)

    with pytest.raises(errors.InvalidArgument) as caught:
        client.find_instance("twin")
    assert caught.value.reason == "AMBIGUOUS_NAME"
    assert "2 instances are named 'twin' (i-twin-a, i-twin-b)" in caught.value.message


def test_find_instance_of_a_name_no_instance_has_is_not_found():
    client, _ = node_client(ListNodeInstances=instances_named)

    with pytest.raises(errors.NotFound, match="no instance is named 'gone'"):
        client.find_instance("gone")


def test_instances_by_uuid_asks_a_thousand_uuids_at_a_time():
    def echo(request: pb.ListNodeInstancesRequest) -> pb.ListNodeInstancesResponse:
        return pb.ListNodeInstancesResponse(
            instances=[pb.Instance(uuid=u) for u in request.instance_uuids]
        )

    client, channel = node_client(ListNodeInstances=echo)
    uuids = [f"i-{n}" for n in range(2500)]

    assert [i.uuid for i in client.instances_by_uuid(uuids)] == uuids
    assert [len(r.instance_uuids) for r in sent(channel)] == [1000, 1000, 500]


def test_node_instances_of_a_nodename_needs_its_host():
    client, channel = node_client()

    with pytest.raises(errors.InvalidArgument):
        client.node_instances(nodename="n1")
    assert channel.calls == []


def test_host_usage_delete_node_and_delete_host_nodes_send_what_they_are_given():
    client, channel = node_client(
        GetHostUsage=pb.GetHostUsageResponse(host="h1", instance_count=2),
        DeleteComputeNode=pb.DeleteComputeNodeResponse(),
        DeleteHostNodes=pb.DeleteHostNodesResponse(deleted=3),
    )

    assert client.host_usage("h1").instance_count == 2
    assert client.delete_node(host="h1", nodename="n1") is None
    assert client.delete_host_nodes("h1") == 3

    names = [name for name, _, _ in channel.calls]
    assert names == ["GetHostUsage", "DeleteComputeNode", "DeleteHostNodes"]
    usage, delete, delete_all = sent(channel)
    assert (usage.host, delete.node, delete_all.host) == ("h1", KEY, "h1")


def test_report_snapshot_wraps_the_snapshot():
    client, channel = node_client(
        ReportSnapshot=pb.ReportSnapshotResponse(node_uuid=UUID, generation=1, changed=True)
    )

    answer = client.report_snapshot(pb.ResourceSnapshot(host="h1", nodename="n1", sequence=4))

    assert answer.node_uuid == UUID
    assert sent(channel)[0].snapshot.sequence == 4


def test_watch_nodes_streams_without_deadline_and_cancels_when_the_caller_stops():
    events = [pb.WatchComputeNodesResponse(revision=r) for r in (1, 2, 3)]
    client, channel = node_client(WatchComputeNodes=FakeStreamCall(events))

    watch = client.watch_nodes(start_revision=5)
    assert next(watch).revision == 1
    watch.close()

    assert channel.calls[0][1].start_revision == 5
    assert channel.calls[0][2] is None
    assert channel.streams[0].cancelled


def test_a_missing_node_comes_out_as_not_found():
    missing = errors.NotFound("no compute node n9 on host h1")
    client, _ = node_client(GetComputeNode=FakeRpcError.from_berth(missing))

    with pytest.raises(errors.NotFound, match="n9"):
        client.get_node(host="h1", nodename="n9")


def test_an_unreachable_node_service_is_named_in_the_error():
    refused = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect: Connection refused")
    client, _ = node_client(GetStatistics=refused)

    with pytest.raises(errors.Unavailable) as caught:
        client.statistics()

    assert str(caught.value) == (
        "cannot reach the node service at 127.0.0.1:50052: connection refused"
    )


# -- ComputeClient ---------------------------------------------------------------------------


def test_build_instance_sends_the_instance_the_node_and_the_claim():
    client, channel = compute_client(
        BuildInstance=lambda request: cpb.BuildInstanceResponse(instance=request.instance)
    )

    built = client.build_instance(
        "i1",
        project_id="p1",
        user_id="u1",
        vcpus=2,
        memory_mb=4096,
        disk_gb=40,
        nodename="n1",
        claim_id="c1",
    )

    assert built.uuid == "i1"
    request = sent(channel)[0]
    assert (request.nodename, request.claim_id) == ("n1", "c1")
    assert request.instance == pb.Instance(
        uuid="i1",
        project_id="p1",
        user_id="u1",
        resources=common_pb2.Resources(vcpus=2, memory_mb=4096, disk_gb=40),
        claim_id="c1",
    )


def test_delete_instance_and_list_instances():
    pages = [
        cpb.ListInstancesResponse(instances=[pb.Instance(uuid="i1")], next_page_token="t"),
        cpb.ListInstancesResponse(instances=[pb.Instance(uuid="i2")]),
    ]
    client, channel = compute_client(
        DeleteInstance=cpb.DeleteInstanceResponse(), ListInstances=pages
    )

    client.delete_instance("i0")
    assert [i.uuid for i in client.list_instances(nodename="n1")] == ["i1", "i2"]

    delete, *lists = sent(channel)
    assert delete.instance_uuid == "i0"
    assert [(r.nodename, r.page_token) for r in lists] == [("n1", ""), ("n1", "t")]


def test_power_and_maintenance_calls_send_their_enums():
    status = cpb.MaintenanceStatus(mode=host_pb2.MAINTENANCE_MODE_ENABLED, instances=2)
    client, channel = compute_client(
        HostPowerAction=cpb.HostPowerActionResponse(result="rebooting"),
        SetMaintenance=cpb.SetMaintenanceResponse(status=status),
        GetMaintenance=cpb.GetMaintenanceResponse(status=status),
    )

    assert client.power_action(host_pb2.POWER_ACTION_REBOOT, nodename="bm-0").result == "rebooting"
    assert client.set_maintenance(True).instances == 2
    assert client.get_maintenance() == status

    power, maintenance, _ = sent(channel)
    assert (power.action, power.nodename) == (host_pb2.POWER_ACTION_REBOOT, "bm-0")
    assert maintenance.mode == host_pb2.MAINTENANCE_MODE_ENABLED


def test_leaving_maintenance_sends_disabled():
    client, channel = compute_client(SetMaintenance=cpb.SetMaintenanceResponse())

    client.set_maintenance(False)

    assert sent(channel)[0].mode == host_pb2.MAINTENANCE_MODE_DISABLED


def test_an_agent_that_cannot_do_an_action_says_unimplemented():
    cannot = errors.Unimplemented("the fake-cluster driver cannot reboot a host")
    client, _ = compute_client(HostPowerAction=FakeRpcError.from_berth(cannot))

    with pytest.raises(errors.Unimplemented, match="cannot reboot"):
        client.power_action(host_pb2.POWER_ACTION_REBOOT)


def test_an_unreachable_agent_is_named_in_the_error():
    refused = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "failed to connect: Connection refused")
    client, _ = compute_client(ListInstances=refused)

    with pytest.raises(
        errors.Unavailable, match=r"cannot reach the compute agent at 127\.0\.0\.1:50054"
    ):
        list(client.list_instances())


def test_connect_gives_each_client_its_own_channel_and_target():
    with (
        NodeClient.connect("grpc://127.0.0.1:1", timeout=2.0) as node,
        ComputeClient.connect("127.0.0.1:2") as compute,
    ):
        assert (node.target, node.timeout, repr(node)) == (
            "127.0.0.1:1",
            2.0,
            "NodeClient(target='127.0.0.1:1')",
        )
        assert repr(compute) == "ComputeClient(target='127.0.0.1:2')"
