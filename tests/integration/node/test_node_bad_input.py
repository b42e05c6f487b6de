"""Bad snapshots and requests: INVALID_ARGUMENT naming the field, and nothing stored."""

from __future__ import annotations

import grpc
import pytest
from berth.client.errors import from_rpc_error
from berth.v1 import common_pb2, node_pb2
from grpc import aio

from tests.integration.node.support import instance, report, snapshot


async def _invalid_field(coro) -> str:
    with pytest.raises(aio.AioRpcError) as err:
        await coro
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    error = from_rpc_error(err.value)
    assert error.violations, "a BadRequest field violation names the field"
    return error.violations[0].field


def _raw_vcpus(value: int) -> node_pb2.ResourceSnapshot:
    """A snapshot whose total.vcpus is a raw varint, as a buggy or hostile peer could send."""
    snap = snapshot("kvm-1")
    snap.ClearField("total")
    raw_total = (
        b"\x08"
        + _varint(value)
        + common_pb2.Resources(memory_mb=1024, disk_gb=10).SerializeToString()
    )
    return node_pb2.ResourceSnapshot.FromString(
        snap.SerializeToString() + b"\x4a" + _varint(len(raw_total)) + raw_total
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


BAD = [
    pytest.param(snapshot("kvm-1", vcpus=-1), "snapshot.total.vcpus", id="negative-vcpus"),
    pytest.param(snapshot("kvm-1", memory_mb=-5), "snapshot.total.memory_mb", id="negative-memory"),
    pytest.param(snapshot("kvm-1", disk_gb=1 << 50), "snapshot.total.disk_gb", id="absurd-disk"),
    pytest.param(_raw_vcpus(1 << 31), "snapshot.total.vcpus", id="vcpus-2^31"),
    pytest.param(
        snapshot("kvm-1", instances=(instance(vcpus=300),)),
        "snapshot.used.vcpus",
        id="used-beyond-ratio",
    ),
    pytest.param(
        snapshot("kvm-1", memory_mb=1024, reserved_memory_mb=2000),
        "snapshot.reserved_host_memory_mb",
        id="reserved-beyond-total",
    ),
    pytest.param(snapshot("kvm-1", "n" * 256), "snapshot.nodename", id="nodename-256"),
    pytest.param(snapshot(""), "snapshot.host", id="no-host"),
    pytest.param(snapshot("kvm-1", node_uuid="not-a-uuid"), "snapshot.node_uuid", id="bad-uuid"),
    pytest.param(snapshot("kvm-1", sequence=-1), "snapshot.sequence", id="negative-sequence"),
    pytest.param(
        snapshot("kvm-1", cpu_allocation_ratio=0), "snapshot.cpu_allocation_ratio", id="zero-ratio"
    ),
    pytest.param(
        snapshot("kvm-1", ram_allocation_ratio=float("nan")),
        "snapshot.ram_allocation_ratio",
        id="nan-ratio",
    ),
    pytest.param(snapshot("kvm-1", host_ip="300.1.1.1"), "snapshot.host_ip", id="bad-ip"),
    pytest.param(
        snapshot("kvm-1", instances=(instance(project=""),)),
        "snapshot.instances[0].project_id",
        id="no-project",
    ),
    pytest.param(
        snapshot("kvm-1", instances=(instance(vcpus=-2),), used=common_pb2.Resources(vcpus=1)),
        "snapshot.instances[0].resources.vcpus",
        id="negative-instance",
    ),
    pytest.param(
        snapshot("kvm-1", instances=(instance(state=99),)),
        "snapshot.instances[0].state",
        id="unknown-state",
    ),
    pytest.param(
        snapshot("kvm-1", resource_class="BAREMETAL_GOLD", whole_machine=True),
        "snapshot.resource_class",
        id="class-without-custom-prefix",
    ),
    pytest.param(
        snapshot("kvm-1", resource_class="CUSTOM_baremetal", whole_machine=True),
        "snapshot.resource_class",
        id="lower-case-class",
    ),
    pytest.param(
        snapshot("kvm-1", resource_class="CUSTOM_" + "G" * 249, whole_machine=True),
        "snapshot.resource_class",
        id="class-256",
    ),
    pytest.param(
        snapshot("kvm-1", whole_machine=True),
        "snapshot.resource_class",
        id="whole-machine-without-class",
    ),
    pytest.param(
        snapshot("kvm-1", resource_class="CUSTOM_BAREMETAL"),
        "snapshot.whole_machine",
        id="class-on-a-node-of-vms",
    ),
    pytest.param(
        snapshot("kvm-1", instances=(instance(flavor_extra_specs={"resources:CUSTOM_x": "1"}),)),
        "snapshot.instances[0].flavor_extra_specs[resources:CUSTOM_x]",
        id="instance-bad-class",
    ),
    pytest.param(
        snapshot(
            "kvm-1",
            instances=(instance(flavor_extra_specs={f"k{i}": "v" for i in range(101)}),),
        ),
        "snapshot.instances[0].flavor_extra_specs",
        id="instance-too-many-specs",
    ),
]


@pytest.mark.parametrize(("snap", "field"), BAD)
async def test_a_bad_snapshot_is_refused_naming_the_field_and_nothing_is_stored(nodes, snap, field):
    assert await _invalid_field(report(nodes, snap)) == field
    assert not (await nodes.ListComputeNodes(node_pb2.ListComputeNodesRequest())).nodes


async def test_an_instance_listed_twice_is_refused(nodes):
    vm = instance()
    twice = snapshot("kvm-1", instances=(vm, vm))
    assert await _invalid_field(report(nodes, twice)) == "snapshot.instances[1].uuid"


async def test_a_bad_snapshot_leaves_the_stored_node_as_it_was(nodes):
    await report(nodes, snapshot("kvm-1", sequence=1))
    await _invalid_field(report(nodes, snapshot("kvm-1", sequence=2, vcpus=-1)))
    node = (await nodes.ListComputeNodes(node_pb2.ListComputeNodesRequest())).nodes[0]
    assert node.total.vcpus == 16 and node.generation == 1


async def test_a_missing_boot_epoch_is_refused(nodes):
    snap = snapshot("kvm-1")
    snap.ClearField("boot_epoch")
    assert await _invalid_field(report(nodes, snap)) == "snapshot.boot_epoch"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (node_pb2.GetComputeNodeRequest(), "node"),
        (node_pb2.GetComputeNodeRequest(node=node_pb2.ComputeNodeRef(uuid="x")), "node.uuid"),
    ],
)
async def test_a_node_must_be_named_properly(nodes, request_, field):
    assert await _invalid_field(nodes.GetComputeNode(request_)) == field


async def test_search_needs_a_pattern_and_paging_needs_a_sane_size(nodes):
    assert (
        await _invalid_field(nodes.SearchComputeNodes(node_pb2.SearchComputeNodesRequest()))
        == "nodename_pattern"
    )
    bad_page = nodes.ListComputeNodes(node_pb2.ListComputeNodesRequest(page_size=-1))
    assert await _invalid_field(bad_page) == "page_size"
