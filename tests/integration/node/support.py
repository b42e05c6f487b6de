"""Helpers for the node service's integration tests: snapshots as an agent would send them."""

from __future__ import annotations

import uuid as uuidlib
from datetime import UTC, datetime

from berth.v1 import common_pb2, node_pb2
from google.protobuf.timestamp_pb2 import Timestamp

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
ACTIVE = node_pb2.INSTANCE_STATE_ACTIVE


def epoch(value: datetime = EPOCH) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def instance(
    project: str = "p1", vcpus: int = 2, memory_mb: int = 2048, disk_gb: int = 20, **fields
) -> node_pb2.Instance:
    fields.setdefault("uuid", str(uuidlib.uuid4()))
    fields.setdefault("state", ACTIVE)
    return node_pb2.Instance(
        project_id=project,
        resources=common_pb2.Resources(vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb),
        **fields,
    )


def snapshot(
    host: str = "compute-1",
    nodename: str | None = None,
    sequence: int = 1,
    instances: tuple[node_pb2.Instance, ...] = (),
    *,
    vcpus: int = 16,
    memory_mb: int = 32768,
    disk_gb: int = 500,
    reserved_memory_mb: int = 512,
    boot: datetime = EPOCH,
    **fields,
) -> node_pb2.ResourceSnapshot:
    """A KVM-like node's snapshot whose usage is what its instances use plus the reserve."""
    used = common_pb2.Resources(
        vcpus=sum(i.resources.vcpus for i in instances),
        memory_mb=reserved_memory_mb + sum(i.resources.memory_mb for i in instances),
        disk_gb=sum(i.resources.disk_gb for i in instances),
    )
    values = {
        "host": host,
        "nodename": nodename or host,
        "boot_epoch": epoch(boot),
        "sequence": sequence,
        "hypervisor_type": "QEMU",
        "hypervisor_version": "9.0",
        "total": common_pb2.Resources(vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb),
        "used": used,
        "cpu_allocation_ratio": 16.0,
        "ram_allocation_ratio": 1.5,
        "disk_allocation_ratio": 1.0,
        "reserved_host_memory_mb": reserved_memory_mb,
        "instances": instances,
    }
    return node_pb2.ResourceSnapshot(**(values | fields))


async def report(stub, snap: node_pb2.ResourceSnapshot) -> node_pb2.ReportSnapshotResponse:
    return await stub.ReportSnapshot(node_pb2.ReportSnapshotRequest(snapshot=snap))


def by_key(host: str, nodename: str | None = None) -> node_pb2.ComputeNodeRef:
    return node_pb2.ComputeNodeRef(
        key=node_pb2.ComputeNodeKey(host=host, nodename=nodename or host)
    )
