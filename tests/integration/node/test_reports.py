"""ReportSnapshot: creation, change detection, order, identity."""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from datetime import timedelta

import grpc
from berth.v1 import node_pb2

from services.node.metrics import FIRST_REPORTS
from tests.integration.node.support import EPOCH, by_key, instance, report, snapshot
from tests.integration.registry.support import status_of


async def _get(nodes, host: str, nodename: str | None = None) -> node_pb2.ComputeNode:
    return (
        await nodes.GetComputeNode(node_pb2.GetComputeNodeRequest(node=by_key(host, nodename)))
    ).node


async def test_the_first_snapshot_creates_the_node_with_the_agents_uuid(nodes):
    node_uuid = str(uuidlib.uuid4())
    vm = instance(claim_id="claim-1")
    response = await report(nodes, snapshot("kvm-1", node_uuid=node_uuid, instances=(vm,)))
    assert response.changed and response.node_uuid == node_uuid and response.generation == 1
    node = await _get(nodes, "kvm-1")
    assert node.uuid == node_uuid and node.hypervisor_type == "QEMU"
    assert (node.total.vcpus, node.total.memory_mb, node.total.disk_gb) == (16, 32768, 500)
    assert (node.used.vcpus, node.used.memory_mb, node.used.disk_gb) == (2, 2048 + 512, 20)
    assert node.free_ram_mb == 32768 - 2560 and node.free_disk_gb == 480
    assert node.running_vms == 1 and list(node.claim_ids) == ["claim-1"]
    assert node.reserved_host_memory_mb == 512 and node.ram_allocation_ratio == 1.5


async def test_without_a_uuid_the_service_assigns_one_that_never_changes(nodes):
    first = await report(nodes, snapshot("kvm-1"))
    later = await report(nodes, snapshot("kvm-1", sequence=2, vcpus=32))
    assert uuidlib.UUID(first.node_uuid) and later.node_uuid == first.node_uuid


async def test_an_unchanged_snapshot_keeps_the_generation_and_a_change_bumps_it(nodes):
    await report(nodes, snapshot("kvm-1", sequence=1))
    same = await report(nodes, snapshot("kvm-1", sequence=2))
    assert not same.changed and same.generation == 1
    changed = await report(nodes, snapshot("kvm-1", sequence=3, instances=(instance(),)))
    assert changed.changed and changed.generation == 2
    assert (await _get(nodes, "kvm-1")).running_vms == 1


async def test_instance_order_does_not_make_a_change(nodes):
    a, b = instance(), instance()
    await report(nodes, snapshot("kvm-1", sequence=1, instances=(a, b)))
    again = await report(nodes, snapshot("kvm-1", sequence=2, instances=(b, a)))
    assert not again.changed


async def test_an_older_or_replayed_snapshot_is_aborted_and_changes_nothing(nodes):
    await report(nodes, snapshot("kvm-1", sequence=5, vcpus=16))
    await report(nodes, snapshot("kvm-1", sequence=6, vcpus=16))  # unchanged, but seen
    for sequence in (6, 4, 5):
        code = await status_of(report(nodes, snapshot("kvm-1", sequence=sequence, vcpus=64)))
        assert code is grpc.StatusCode.ABORTED
    node = await _get(nodes, "kvm-1")
    assert node.total.vcpus == 16 and node.generation == 1


async def test_a_new_boot_epoch_starts_the_sequence_again(nodes):
    await report(nodes, snapshot("kvm-1", sequence=90))
    restarted = snapshot("kvm-1", sequence=1, vcpus=8, boot=EPOCH + timedelta(minutes=5))
    assert (await report(nodes, restarted)).changed
    stale = snapshot("kvm-1", sequence=91, vcpus=4)  # the old tracker's epoch
    assert await status_of(report(nodes, stale)) is grpc.StatusCode.ABORTED
    assert (await _get(nodes, "kvm-1")).total.vcpus == 8


async def test_a_snapshot_with_another_nodes_uuid_is_refused(nodes):
    await report(nodes, snapshot("kvm-1", node_uuid=str(uuidlib.uuid4())))
    other = snapshot("kvm-1", sequence=2, node_uuid=str(uuidlib.uuid4()))
    assert await status_of(report(nodes, other)) is grpc.StatusCode.FAILED_PRECONDITION


async def test_a_renamed_node_is_refused(nodes):
    node_uuid = str(uuidlib.uuid4())
    await report(nodes, snapshot("kvm-1", "old-name", node_uuid=node_uuid))
    renamed = snapshot("kvm-1", "new-name", sequence=2, node_uuid=node_uuid)
    assert await status_of(report(nodes, renamed)) is grpc.StatusCode.FAILED_PRECONDITION


async def test_a_deleted_node_reported_again_comes_back_with_its_uuid(nodes):
    node_uuid = str(uuidlib.uuid4())
    await report(nodes, snapshot("kvm-1", node_uuid=node_uuid))
    await nodes.DeleteComputeNode(node_pb2.DeleteComputeNodeRequest(node=by_key("kvm-1")))
    back = await report(nodes, snapshot("kvm-1", sequence=2, node_uuid=node_uuid))
    assert back.changed and back.node_uuid == node_uuid and back.generation == 2


async def test_many_agents_reporting_at_once_each_get_their_node(nodes):
    hosts = [f"kvm-{i}" for i in range(60)]
    first = await asyncio.gather(*(report(nodes, snapshot(h)) for h in hosts))
    second = await asyncio.gather(
        *(report(nodes, snapshot(h, sequence=2, instances=(instance(),))) for h in hosts)
    )
    assert len({r.node_uuid for r in first}) == 60
    assert all(r.changed and r.generation == 2 for r in second)
    listed = await nodes.ListComputeNodes(node_pb2.ListComputeNodesRequest(page_size=1000))
    assert sorted(n.host for n in listed.nodes) == sorted(hosts)
    assert all(n.running_vms == 1 for n in listed.nodes)


async def test_racing_snapshots_of_one_node_leave_the_newest(nodes):
    await report(nodes, snapshot("kvm-1", sequence=1))
    results = await asyncio.gather(
        *(report(nodes, snapshot("kvm-1", sequence=s, vcpus=s)) for s in range(2, 30)),
        return_exceptions=True,
    )
    accepted = [r for r in results if not isinstance(r, BaseException)]
    assert accepted, "at least the newest snapshot lands"
    assert (await _get(nodes, "kvm-1")).total.vcpus == 29


async def test_the_stream_answers_each_snapshot_in_order_and_goes_on_after_a_refusal(nodes):
    sent = [
        snapshot("s1", sequence=1),
        snapshot("s2", sequence=1),
        snapshot("s1", sequence=1),  # replayed: refused as stale, the stream goes on
        node_pb2.ResourceSnapshot(host="s3"),  # malformed: refused, the stream goes on
        snapshot("s1", sequence=2, vcpus=8),
    ]
    call = nodes.ReportSnapshotStream(
        node_pb2.ReportSnapshotStreamRequest(snapshot=s) for s in sent
    )
    answers = [answer async for answer in call]
    assert [(a.nodename, a.sequence) for a in answers] == [(s.nodename, s.sequence) for s in sent]
    codes = [grpc.StatusCode.OK.value[0]] * 2 + [grpc.StatusCode.ABORTED.value[0]]
    codes += [grpc.StatusCode.INVALID_ARGUMENT.value[0], grpc.StatusCode.OK.value[0]]
    assert [a.error_code for a in answers] == codes
    assert answers[2].error_reason == "STALE_SNAPSHOT" and "not newer" in answers[2].error_message
    assert answers[0].accepted.node_uuid == answers[4].accepted.node_uuid
    assert (await _get(nodes, "s1")).total.vcpus == 8


def _first_reports(path: str) -> float:
    return FIRST_REPORTS.labels(path)._value.get()


async def test_a_burst_of_first_reports_is_created_together_and_each_rule_still_holds(nodes):
    """A rack powering on: hundreds of new nodes over one stream land in shared batches.
    Among them, the cases the batch must leave to the one-by-one path: a deleted node
    coming back with its uuid, a node reported twice in the burst, a renamed node."""
    restored_uuid, renamed_uuid = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    await report(nodes, snapshot("back", node_uuid=restored_uuid))
    await nodes.DeleteComputeNode(node_pb2.DeleteComputeNodeRequest(node=by_key("back")))
    await report(nodes, snapshot("renamed", "old-name", node_uuid=renamed_uuid))
    new_hosts = [f"rack-{i}" for i in range(300)]
    sent = [snapshot(h, instances=(instance(),)) for h in new_hosts]
    sent += [
        snapshot("back", sequence=2, node_uuid=restored_uuid),
        snapshot("twice", sequence=1),
        snapshot("twice", sequence=2, vcpus=64),
        snapshot("renamed", "new-name", sequence=2, node_uuid=renamed_uuid),
    ]
    batched_before = _first_reports("batch")

    call = nodes.ReportSnapshotStream(
        node_pb2.ReportSnapshotStreamRequest(snapshot=s) for s in sent
    )
    answers = [answer async for answer in call]

    assert [(a.nodename, a.sequence) for a in answers] == [(s.nodename, s.sequence) for s in sent]
    ok = grpc.StatusCode.OK.value[0]
    # Even the twin's second snapshot, pipelined right behind its first, waits for the
    # node's creation and is then judged newer: every snapshot but the rename is accepted.
    refused = [(i, a.error_reason) for i, a in enumerate(answers[:-1]) if a.error_code != ok]
    assert refused == [], refused
    assert answers[-1].error_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert answers[-1].error_reason == "NODE_RENAMED"
    created = answers[: len(new_hosts)]
    assert all(a.accepted.changed and a.accepted.generation == 1 for a in created)
    assert len({a.accepted.node_uuid for a in created}) == len(new_hosts)
    assert _first_reports("batch") - batched_before > len(new_hosts) / 2, "no batch formed"

    back, twin, second_twin = answers[-4:-1]
    assert back.accepted.node_uuid == restored_uuid and back.accepted.generation == 2
    assert twin.accepted.node_uuid == second_twin.accepted.node_uuid
    assert (twin.accepted.generation, second_twin.accepted.generation) == (1, 2)
    assert (await _get(nodes, "twice")).total.vcpus == 64

    listed = await nodes.ListComputeNodes(node_pb2.ListComputeNodesRequest(page_size=1000))
    keys = [(n.host, n.nodename) for n in listed.nodes]
    assert len(keys) == len(set(keys)), "a node was created twice"
    expected = {(h, h) for h in new_hosts} | {("back", "back"), ("twice", "twice")}
    assert set(keys) == expected | {("renamed", "old-name")}
    by_host = {n.host: n for n in listed.nodes}
    assert all(by_host[h].running_vms == 1 for h in new_hosts)
