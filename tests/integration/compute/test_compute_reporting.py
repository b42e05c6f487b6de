"""Snapshots reach the node service: newest first, retried while it is away, dropped when
stale; vanished nodes are deleted there. Against a stand-in NodeService on a real server."""

from __future__ import annotations

import uuid

import grpc
from berth.v1 import common_pb2, compute_pb2, node_pb2

from services.compute import tracker as tracker_module
from services.compute.drivers.fake import FakeIronicDriver, ironic_node_uuid
from services.compute.state import Resources
from tests.integration.compute.support import agent_stub, serve_fake_node_service
from tests.ports import free_port

WAIT_S = 10  # a generous bound, so a broken pusher fails the test instead of hanging it


def build(
    nodename: str = "", vcpus: int = 1, specs: dict[str, str] | None = None
) -> compute_pb2.BuildInstanceRequest:
    return compute_pb2.BuildInstanceRequest(
        instance=node_pb2.Instance(
            uuid=str(uuid.uuid4()),
            project_id="demo",
            resources=common_pb2.Resources(vcpus=vcpus, memory_mb=512, disk_gb=1),
            flavor_extra_specs=specs or {},
        ),
        nodename=nodename,
    )


async def test_each_node_reports_at_start_and_after_every_change(start_compute, node_service):
    agent = await start_compute(node_url=node_service.address)
    tracker = agent.manager.trackers["kvm-1"]
    await tracker.wait_reported(1, timeout_s=WAIT_S)
    first = node_service.latest("kvm-1")
    assert (first.host, first.node_uuid, first.sequence) == ("kvm-1", tracker.node_uuid, 1)
    assert first.total.vcpus == 16 and first.used.memory_mb == 512

    async with agent_stub(agent) as stub:
        built = (await stub.BuildInstance(build(vcpus=3))).instance
    await tracker.wait_reported(timeout_s=WAIT_S)
    latest = node_service.latest("kvm-1")
    assert [i.uuid for i in latest.instances] == [built.uuid]
    assert latest.instances[0].state == node_pb2.INSTANCE_STATE_ACTIVE
    assert latest.used.vcpus == 3 and latest.boot_epoch == first.boot_epoch
    sequences = [s.sequence for s in node_service.snapshots]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)


async def test_snapshots_wait_out_an_absent_node_service_and_the_newest_is_sent(start_compute):
    address = f"127.0.0.1:{free_port()}"
    agent = await start_compute(node_url=address)
    tracker = agent.manager.trackers["kvm-1"]
    async with agent_stub(agent) as stub:
        built = (await stub.BuildInstance(build())).instance
    for _ in range(20):
        newest = tracker.queue_snapshot()
    assert tracker.pusher is not None

    async with serve_fake_node_service(address) as node_service:
        await tracker.wait_reported(newest, timeout_s=WAIT_S)
        # Only the newest pending snapshot was worth sending: the 20 before it never went.
        assert [s.sequence for s in node_service.snapshots] == [newest]
        assert [i.uuid for i in node_service.snapshots[0].instances] == [built.uuid]
    assert tracker.pusher.failures >= 1


async def test_a_stale_snapshot_is_dropped_not_retried(start_compute, node_service):
    agent = await start_compute(node_url=node_service.address)
    tracker = agent.manager.trackers["kvm-1"]
    await tracker.wait_reported(1, timeout_s=WAIT_S)
    node_service.refuse_with = grpc.StatusCode.ABORTED
    tracker.queue_snapshot()
    await node_service.wait_for(lambda: node_service.refused == 1)
    node_service.refuse_with = None
    newest = tracker.queue_snapshot()
    await tracker.wait_reported(newest, timeout_s=WAIT_S)
    assert tracker.pusher is not None and tracker.pusher.failures == 0
    assert [s.sequence for s in node_service.snapshots] == [1, newest]


async def test_a_node_owned_by_another_host_is_retried_until_accepted(start_compute, node_service):
    node_service.refuse_with = grpc.StatusCode.FAILED_PRECONDITION
    agent = await start_compute(node_url=node_service.address)
    tracker = agent.manager.trackers["kvm-1"]
    await node_service.wait_for(lambda: node_service.refused >= 2)
    node_service.refuse_with = None
    await tracker.wait_reported(1, timeout_s=WAIT_S)
    assert tracker.pusher is not None and tracker.pusher.failures >= 2


async def test_the_node_services_uuid_for_a_node_is_adopted_and_kept(start_compute, node_service):
    theirs = str(uuid.uuid4())
    node_service.node_uuids["kvm-1"] = theirs
    agent = await start_compute(node_url=node_service.address)
    tracker = agent.manager.trackers["kvm-1"]
    await tracker.wait_reported(1, timeout_s=WAIT_S)
    assert tracker.node_uuid == theirs and agent.state.node_uuids["kvm-1"] == theirs
    await tracker.wait_reported(tracker.queue_snapshot(), timeout_s=WAIT_S)
    assert node_service.latest("kvm-1").node_uuid == theirs


async def test_snapshots_repeat_every_update_interval(start_compute, node_service):
    agent = await start_compute(node_url=node_service.address, update_resources_interval=0.05)
    await agent.manager.trackers["kvm-1"].wait_reported(4, timeout_s=WAIT_S)


async def test_a_vanished_node_is_deleted_unless_it_holds_instances(start_compute, node_service):
    agent = await start_compute(
        host="ironic-1", driver="fake-ironic", fake_nodes=3, node_url=node_service.address
    )
    nodes = [ironic_node_uuid("ironic-1", i) for i in range(3)]
    async with agent_stub(agent) as stub:
        await stub.BuildInstance(
            build(nodename=nodes[1], specs={"resources:CUSTOM_BAREMETAL": "1"})
        )
    # The rack shrinks to its first server.
    agent.manager.driver = FakeIronicDriver(
        "ironic-1", "", Resources(16, 65536, 1000), 1, "ironic-1"
    )
    await agent.manager.refresh_nodes()

    await node_service.wait_for(lambda: node_service.deleted == [nodes[2]])
    assert sorted(agent.manager.trackers) == [nodes[0]]
    assert nodes[2] not in agent.state.node_uuids
    assert nodes[1] in agent.state.node_uuids  # kept: it still holds an instance
    async with agent_stub(agent) as stub:
        listing = await stub.ListInstances(compute_pb2.ListInstancesRequest(nodename=nodes[1]))
        assert len(listing.instances) == 1


async def test_a_build_and_a_delete_answer_once_the_node_service_has_their_snapshot(
    start_compute, node_service
):
    # So that `berth boot web` then `berth delete web` (or server-list) finds web at once.
    agent = await start_compute(node_url=node_service.address)
    request = build()
    request.instance.name, request.instance.flavor_name = "web-1", "m1.tiny"
    async with agent_stub(agent) as stub:
        built = (await stub.BuildInstance(request)).instance
        (shown,) = node_service.latest("kvm-1").instances
        assert (shown.uuid, shown.name, shown.flavor_name) == (built.uuid, "web-1", "m1.tiny")
        assert shown.state == node_pb2.INSTANCE_STATE_ACTIVE

        await stub.DeleteInstance(compute_pb2.DeleteInstanceRequest(instance_uuid=built.uuid))
        assert list(node_service.latest("kvm-1").instances) == []


async def test_while_the_node_service_refuses_snapshots_builds_do_not_wait_for_it(
    start_compute, node_service, monkeypatch
):
    # Were the build to wait for a snapshot to be accepted, it would wait for an hour.
    monkeypatch.setattr(tracker_module, "REPORT_WAIT_S", 3600)
    node_service.refuse_with = grpc.StatusCode.UNAVAILABLE
    agent = await start_compute(node_url=node_service.address)
    await node_service.wait_for(lambda: node_service.refused >= 1)
    async with agent_stub(agent) as stub:
        built = (await stub.BuildInstance(build(), timeout=WAIT_S)).instance
    assert built.state == node_pb2.INSTANCE_STATE_ACTIVE
    assert all(not s.instances for s in node_service.snapshots)


async def test_an_agents_snapshots_go_over_one_stream_or_unary_to_an_older_node_service(
    start_compute, node_service, tmp_path
):
    agent = await start_compute(node_url=node_service.address)
    tracker = agent.manager.trackers["kvm-1"]
    await tracker.wait_reported(tracker.queue_snapshot(), timeout_s=WAIT_S)
    assert node_service.streamed >= 1 and not agent.manager._snapshots.unary

    async with serve_fake_node_service() as older:
        older.streams = False  # a node service from before ReportSnapshotStream
        agent = await start_compute(
            node_url=older.address, host="kvm-2", data_dir=tmp_path / "kvm-2"
        )
        tracker = agent.manager.trackers["kvm-2"]
        newest = tracker.queue_snapshot()
        await tracker.wait_reported(newest, timeout_s=WAIT_S)
        # The same snapshot went the unary way at once: no failure, no retry.
        assert tracker.pusher is not None and tracker.pusher.failures == 0
        assert older.streamed == 0 and older.latest("kvm-2").sequence == newest
