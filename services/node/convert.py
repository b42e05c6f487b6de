"""Rows of the node service's tables as berth.v1 messages."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from berth.v1 import common_pb2, node_pb2
from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def node(
    row: Mapping[Any, Any], claim_ids: Iterable[str] = (), instance_uuids: Iterable[str] = ()
) -> node_pb2.ComputeNode:
    """A compute_nodes row (any mapping of its columns) as a ComputeNode, with the claim ids
    and uuids of the instances it reports (both sorted, so equal nodes read equal)."""
    message = node_pb2.ComputeNode()
    if row["details"]:
        message.ParseFromString(row["details"])  # PCI pools, NUMA, supported instances
    message.MergeFrom(
        node_pb2.ComputeNode(
            id=row.get("id") or 0,
            uuid=row["uuid"],
            host=row["host"],
            nodename=row["nodename"],
            hypervisor_type=row["hypervisor_type"],
            hypervisor_version=row["hypervisor_version"],
            cpu_info=row["cpu_info"],
            total=common_pb2.Resources(
                vcpus=row["vcpus"], memory_mb=row["memory_mb"], disk_gb=row["local_gb"]
            ),
            used=common_pb2.Resources(
                vcpus=row["vcpus_used"],
                memory_mb=row["memory_mb_used"],
                disk_gb=row["local_gb_used"],
            ),
            free_ram_mb=row["free_ram_mb"],
            free_disk_gb=row["free_disk_gb"],
            disk_available_least_gb=row["disk_available_least"],
            running_vms=row["running_vms"],
            current_workload=row["current_workload"],
            io_ops=row["io_ops"],
            host_ip=row["host_ip"],
            cpu_allocation_ratio=row["cpu_allocation_ratio"],
            ram_allocation_ratio=row["ram_allocation_ratio"],
            disk_allocation_ratio=row["disk_allocation_ratio"],
            reserved_host_memory_mb=row["reserved_host_memory_mb"],
            reserved_host_disk_mb=row["reserved_host_disk_mb"],
            reserved_host_cpus=row["reserved_host_cpus"],
            resource_class=row["resource_class"],
            whole_machine=row["whole_machine"],
            generation=row["generation"],
            created_at=timestamp(row["created_at"]),
            updated_at=timestamp(row["updated_at"]),
            deleted_at=timestamp(row["deleted_at"]),
            boot_epoch=timestamp(row["boot_epoch"]),
            claim_ids=sorted(c for c in claim_ids if c),
            instance_uuids=sorted(instance_uuids),
        )
    )
    return message


def instance(row: Mapping[Any, Any]) -> node_pb2.Instance:
    """A node_instances row joined with its node's `node_uuid`, `host` and `nodename`."""
    return node_pb2.Instance(
        uuid=row["uuid"],
        project_id=row["project_id"],
        user_id=row["user_id"],
        resources=common_pb2.Resources(
            vcpus=row["vcpus"], memory_mb=row["memory_mb"], disk_gb=row["disk_gb"]
        ),
        state=row["state"],
        claim_id=row["claim_id"],
        node_uuid=row["node_uuid"],
        host=row["host"],
        nodename=row["nodename"],
        server_group=row["server_group"],
        group_policy=row["group_policy"],
        flavor_extra_specs=json.loads(row["flavor_extra_specs"] or "{}"),
        name=row["name"],
        flavor_name=row["flavor_name"],
        created_at=timestamp(row["created_at"]),
    )
