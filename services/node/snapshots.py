"""What a ResourceTracker may report: validation of a snapshot, and the values it stores.

Every check names the offending field, so an agent with a bug learns what to fix; a
snapshot that fails any check stores nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from berth.client.errors import InvalidArgument
from berth.client.flavors import check_resource_class, requested_resource_class
from berth.v1 import common_pb2, node_pb2

from services.common import validation

# Bounds well above any real machine or cluster and well below what the columns hold.
MAX_VCPUS = 1 << 24
MAX_MEMORY_MB = 1 << 42  # 4 EiB
MAX_DISK_GB = 1 << 40
MAX_RATIO = 1000.0
MAX_INSTANCES = 10_000
MAX_CPU_INFO = 65_536
MAX_LIST = 1_000
# As many extra specs as the scheduler takes in one flavor.
MAX_EXTRA_SPECS = 100


@dataclass(frozen=True)
class Report:
    """A validated snapshot: the node's key, its order, its content digest and its columns."""

    snapshot: node_pb2.ResourceSnapshot
    host: str
    nodename: str
    node_uuid: str
    boot_epoch: datetime
    sequence: int
    digest: str

    @property
    def key(self) -> tuple[str, str]:
        return self.host, self.nodename

    def newer_than(self, boot_epoch: datetime, sequence: int) -> bool:
        return (self.boot_epoch, self.sequence) > (boot_epoch, sequence)

    def columns(self) -> dict[str, Any]:
        """compute_nodes values this snapshot sets (not identity, generation or times)."""
        s = self.snapshot
        details = node_pb2.ComputeNode(
            pci_device_pools=s.pci_device_pools,
            numa_topology=s.numa_topology if s.HasField("numa_topology") else None,
            supported_instances=s.supported_instances,
        )
        return {
            "hypervisor_type": s.hypervisor_type,
            "hypervisor_version": s.hypervisor_version,
            "cpu_info": s.cpu_info,
            "vcpus": s.total.vcpus,
            "memory_mb": s.total.memory_mb,
            "local_gb": s.total.disk_gb,
            "vcpus_used": s.used.vcpus,
            "memory_mb_used": s.used.memory_mb,
            "local_gb_used": s.used.disk_gb,
            "free_ram_mb": s.total.memory_mb - s.used.memory_mb,
            "free_disk_gb": s.total.disk_gb - s.used.disk_gb,
            "disk_available_least": s.disk_available_least_gb,
            "running_vms": len(s.instances),
            "current_workload": s.current_workload,
            "io_ops": s.io_ops,
            "host_ip": s.host_ip,
            "cpu_allocation_ratio": s.cpu_allocation_ratio,
            "ram_allocation_ratio": s.ram_allocation_ratio,
            "disk_allocation_ratio": s.disk_allocation_ratio,
            "reserved_host_memory_mb": s.reserved_host_memory_mb,
            "reserved_host_disk_mb": s.reserved_host_disk_mb,
            "reserved_host_cpus": s.reserved_host_cpus,
            "resource_class": s.resource_class,
            "whole_machine": s.whole_machine,
            "details": details.SerializeToString(deterministic=True),
            "boot_epoch": self.boot_epoch,
            "sequence": self.sequence,
            "digest": self.digest,
        }

    def instance_rows(self, node_id: int) -> list[dict[str, Any]]:
        return [
            {
                "node_id": node_id,
                "uuid": i.uuid,
                "project_id": i.project_id,
                "user_id": i.user_id,
                "vcpus": i.resources.vcpus,
                "memory_mb": i.resources.memory_mb,
                "disk_gb": i.resources.disk_gb,
                "state": i.state,
                "claim_id": i.claim_id,
                "server_group": i.server_group,
                "group_policy": i.group_policy,
                "flavor_extra_specs": extra_specs_text(i.flavor_extra_specs),
                "name": i.name,
                "flavor_name": i.flavor_name,
                "created_at": (
                    i.created_at.ToDatetime(tzinfo=UTC) if i.HasField("created_at") else None
                ),
            }
            for i in self.snapshot.instances
        ]


def extra_specs_text(specs: Mapping[str, str]) -> str | None:
    """An instance's flavor extra specs as their column keeps them: JSON, None for none."""
    return json.dumps(dict(sorted(specs.items())), separators=(",", ":")) if specs else None


class Validator:
    """Checks every field of a snapshot: returns its Report, or raises INVALID_ARGUMENT
    naming the field. It remembers, for each node, the digest of the last content it found
    valid (a new Validator checks everything).

    An agent sends each node's snapshot every minute, nearly always unchanged, and checking
    every field of the same content again was a quarter of the node service's CPU on such
    snapshots. Who sent it and when (host, nodename, uuid, boot epoch, sequence) is checked
    on every snapshot; the content only when it differs from that node's last valid one.
    Only content that was valid exactly as received is remembered (a non-canonical uuid
    is rewritten by the check), so skipping the check can never change a report. The
    memory is bounded: past `capacity` nodes, the longest remembered is forgotten."""

    def __init__(self, capacity: int = 1 << 17) -> None:
        self._capacity = capacity
        self._valid: dict[tuple[str, str], str] = {}

    def __call__(self, snapshot: node_pb2.ResourceSnapshot) -> Report:
        host, nodename, node_uuid, epoch = _identity(snapshot)
        key = (host, nodename)
        digest = _digest(snapshot)
        if self._valid.get(key) != digest:
            if _content(snapshot):
                self._remember(key, digest)
            else:
                digest = _digest(snapshot)  # of the canonical content
        return Report(snapshot, host, nodename, node_uuid, epoch, snapshot.sequence, digest)

    def _remember(self, key: tuple[str, str], digest: str) -> None:
        if key not in self._valid and len(self._valid) >= self._capacity:
            del self._valid[next(iter(self._valid))]
        self._valid[key] = digest


def _identity(snapshot: node_pb2.ResourceSnapshot) -> tuple[str, str, str, datetime]:
    """Who reports, and the snapshot's place in the tracker's order."""
    host = validation.name("snapshot.host", snapshot.host)
    nodename = validation.name("snapshot.nodename", snapshot.nodename)
    node_uuid = (
        validation.uuid("snapshot.node_uuid", snapshot.node_uuid) if snapshot.node_uuid else ""
    )
    if not snapshot.HasField("boot_epoch"):
        raise InvalidArgument.field("snapshot.boot_epoch", "must be set (when the tracker started)")
    if snapshot.sequence < 0:
        raise InvalidArgument.field("snapshot.sequence", "must not be negative")
    epoch = snapshot.boot_epoch.ToDatetime(tzinfo=UTC)  # microseconds, as the column keeps
    return host, nodename, node_uuid, epoch


def _content(snapshot: node_pb2.ResourceSnapshot) -> bool:
    """Check what the node holds; whether it was canonical as received (instance uuids
    are rewritten to their canonical form otherwise)."""
    validation.name("snapshot.hypervisor_type", snapshot.hypervisor_type)
    validation.text("snapshot.hypervisor_version", snapshot.hypervisor_version)
    validation.text("snapshot.cpu_info", snapshot.cpu_info, max_length=MAX_CPU_INFO)
    if snapshot.host_ip:
        try:
            ipaddress.ip_address(snapshot.host_ip)
        except ValueError:
            raise InvalidArgument.field("snapshot.host_ip", "must be an IP address") from None
    _resources("snapshot.total", snapshot.total)
    _resources("snapshot.used", snapshot.used)
    _resource_class(snapshot)
    ratios = {
        "cpu_allocation_ratio": snapshot.cpu_allocation_ratio,
        "ram_allocation_ratio": snapshot.ram_allocation_ratio,
        "disk_allocation_ratio": snapshot.disk_allocation_ratio,
    }
    for name, ratio in ratios.items():
        if not 0 < ratio <= MAX_RATIO:  # also refuses NaN
            raise InvalidArgument.field(f"snapshot.{name}", f"must be in (0, {MAX_RATIO:g}]")
    for name in ("reserved_host_memory_mb", "reserved_host_disk_mb", "reserved_host_cpus"):
        if getattr(snapshot, name) < 0:
            raise InvalidArgument.field(f"snapshot.{name}", "must not be negative")
    _reserved_within_total(snapshot)
    _used_within_capacity(snapshot)
    for name in ("current_workload", "io_ops"):
        if getattr(snapshot, name) < 0:
            raise InvalidArgument.field(f"snapshot.{name}", "must not be negative")
    _lists(snapshot)
    return _instances(snapshot)


def _resources(field: str, resources: common_pb2.Resources) -> None:
    limits = (("vcpus", MAX_VCPUS), ("memory_mb", MAX_MEMORY_MB), ("disk_gb", MAX_DISK_GB))
    for name, limit in limits:
        value = getattr(resources, name)
        if value < 0:
            raise InvalidArgument.field(f"{field}.{name}", f"must not be negative (got {value})")
        if value > limit:
            raise InvalidArgument.field(f"{field}.{name}", f"must be at most {limit} (got {value})")


def _resource_class(s: node_pb2.ResourceSnapshot) -> None:
    """A node offers one unit of a custom class exactly when one instance takes it whole
    (a bare-metal server); a node of VMs states none."""
    name = check_resource_class("snapshot.resource_class", s.resource_class, required=False)
    if s.whole_machine and not name:
        raise InvalidArgument.field(
            "snapshot.resource_class",
            "must name the custom resource class a whole-machine (bare-metal) node offers, "
            "e.g. CUSTOM_BAREMETAL; without one no flavor can ask for the node",
        )
    if name and not s.whole_machine:
        raise InvalidArgument.field(
            "snapshot.whole_machine",
            f"must be true for a node of resource class {name}: a node offers one unit of "
            "its class, taken whole by one instance; a node of VMs states no class",
        )


def _reserved_within_total(s: node_pb2.ResourceSnapshot) -> None:
    """As Placement: what is kept back for the host comes out of the node's own total."""
    checks = (
        ("reserved_host_cpus", s.reserved_host_cpus, s.total.vcpus, ""),
        ("reserved_host_memory_mb", s.reserved_host_memory_mb, s.total.memory_mb, " MiB"),
        ("reserved_host_disk_mb", s.reserved_host_disk_mb, s.total.disk_gb * 1024, " MiB"),
    )
    for name, reserved, total, unit in checks:
        if reserved > total:
            raise InvalidArgument.field(
                f"snapshot.{name}",
                f"{reserved}{unit} is more than the node's total ({total}{unit}): what is kept "
                "back for the host comes out of the total",
            )


def _used_within_capacity(s: node_pb2.ResourceSnapshot) -> None:
    """What the instances use (used less the reserved amounts) may exceed the total by the
    allocation ratio (over-commit), never beyond it. Agents hold to Placement's tighter
    floor((total - reserved) x ratio); this bound also accepts a node filled under the
    older rule (total x ratio - reserved), whose instances stay where they are."""
    checks = (
        ("vcpus", s.cpu_allocation_ratio, s.reserved_host_cpus),
        ("memory_mb", s.ram_allocation_ratio, s.reserved_host_memory_mb),
        ("disk_gb", s.disk_allocation_ratio, math.ceil(s.reserved_host_disk_mb / 1024)),
    )
    for name, ratio, reserved in checks:
        used, total = getattr(s.used, name), getattr(s.total, name)
        if used - max(reserved, 0) > total * ratio:
            raise InvalidArgument.field(
                f"snapshot.used.{name}",
                f"{used} less the {reserved} reserved is more than the total {total} times the "
                f"allocation ratio {ratio:g} allows",
            )


def _lists(s: node_pb2.ResourceSnapshot) -> None:
    if len(s.supported_instances) > MAX_LIST:
        raise InvalidArgument.field("snapshot.supported_instances", f"at most {MAX_LIST} entries")
    for i, triple in enumerate(s.supported_instances):
        validation.name(f"snapshot.supported_instances[{i}]", triple)
    if len(s.pci_device_pools) > MAX_LIST:
        raise InvalidArgument.field("snapshot.pci_device_pools", f"at most {MAX_LIST} pools")
    for i, pool in enumerate(s.pci_device_pools):
        if pool.count < 0:
            raise InvalidArgument.field(
                f"snapshot.pci_device_pools[{i}].count", "must not be negative"
            )
    if len(s.released_claim_ids) > MAX_LIST:
        raise InvalidArgument.field("snapshot.released_claim_ids", f"at most {MAX_LIST} ids")
    for i, claim_id in enumerate(s.released_claim_ids):
        validation.text(f"snapshot.released_claim_ids[{i}]", claim_id, max_length=64)
    for i, cell in enumerate(s.numa_topology.cells):
        if cell.memory_mb < 0 or cell.cpu_usage < 0 or cell.memory_usage_mb < 0:
            raise InvalidArgument.field(
                f"snapshot.numa_topology.cells[{i}]", "amounts must not be negative"
            )


def _instances(s: node_pb2.ResourceSnapshot) -> bool:
    """Check each instance; whether every uuid came canonical."""
    if len(s.instances) > MAX_INSTANCES:
        raise InvalidArgument.field(
            "snapshot.instances",
            f"at most {MAX_INSTANCES} instances per node (got {len(s.instances)})",
        )
    seen: set[str] = set()
    canonical = True
    for i, instance in enumerate(s.instances):
        field = f"snapshot.instances[{i}]"
        uuid = validation.uuid(f"{field}.uuid", instance.uuid)
        if uuid in seen:
            raise InvalidArgument.field(f"{field}.uuid", f"instance {uuid} is listed twice")
        seen.add(uuid)
        if uuid != instance.uuid:
            instance.uuid = uuid  # canonical form, so digests and lookups agree
            canonical = False
        validation.name(f"{field}.project_id", instance.project_id)
        validation.name(f"{field}.user_id", instance.user_id, required=False)
        validation.enum(f"{field}.state", instance.state, node_pb2.InstanceState)
        validation.text(f"{field}.claim_id", instance.claim_id, max_length=64)
        validation.name(f"{field}.server_group", instance.server_group, required=False)
        validation.enum(
            f"{field}.group_policy",
            instance.group_policy,
            common_pb2.GroupPolicy,
            allow_unspecified=True,
        )
        _resources(f"{field}.resources", instance.resources)
        _extra_specs(f"{field}.flavor_extra_specs", instance.flavor_extra_specs)
        validation.text(f"{field}.name", instance.name)
        validation.text(f"{field}.flavor_name", instance.flavor_name)
    return canonical


def _extra_specs(field: str, specs: Mapping[str, str]) -> None:
    if len(specs) > MAX_EXTRA_SPECS:
        raise InvalidArgument.field(field, f"at most {MAX_EXTRA_SPECS} (got {len(specs)})")
    for key, value in specs.items():
        validation.name(field, key)
        validation.text(f"{field}[{key}]", value)
    requested_resource_class(specs, field)


def _digest(snapshot: node_pb2.ResourceSnapshot) -> str:
    """The content of a snapshot, without who sent it when: equal digests, equal state."""
    content = node_pb2.ResourceSnapshot()
    content.CopyFrom(snapshot)
    for name in ("host", "nodename", "node_uuid", "boot_epoch", "sequence", "instances"):
        content.ClearField(name)
    for instance in sorted(snapshot.instances, key=lambda i: i.uuid):
        copy = content.instances.add()
        copy.CopyFrom(instance)
        for name in ("node_uuid", "host", "nodename"):
            copy.ClearField(name)  # type: ignore[arg-type]  # each is a field of Instance
    return hashlib.blake2b(
        content.SerializeToString(deterministic=True), digest_size=16
    ).hexdigest()
