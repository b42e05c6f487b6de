"""ResourceTracker: one node's capacity, its instances, and the snapshots that report them.

Usage is what the instances on the node were given plus the amounts reserved for the host.
A claim fits as Placement decides, for each resource: the request is at most the node's
total (max_unit), and at most what is free, floor((total - reserved) x allocation ratio)
minus what the instances use. A bare-metal node (whole_machine) offers one unit of its
resource class: it holds one instance, whose flavor asks for that class, which uses all
of it; it keeps nothing back for the host. A node of VMs takes no instance that asks for a
resource class.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from berth.client.errors import ResourceExhausted
from berth.v1 import node_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from services.compute.drivers.base import NodeInventory
from services.compute.pusher import SnapshotPusher
from services.compute.settings import MAX_DISK_GB, MAX_MEMORY_MB, MAX_VCPUS, ComputeSettings
from services.compute.state import AgentState, InstanceRecord, InstanceState, Resources

INSUFFICIENT = "INSUFFICIENT_RESOURCES"
CLASS_MISMATCH = "RESOURCE_CLASS_MISMATCH"
# The node service takes at most this many instances in one node's snapshot.
MAX_INSTANCES_PER_NODE = 10_000
# How long a build or delete waits, before it answers, for the node service to accept the
# snapshot that shows it: one round trip when all is well; a slow node service delays the
# answer by no more than this.
REPORT_WAIT_S = 2.0
# Nova's task states that keep a node busy (current_workload) and those heavy on I/O.
_WORKLOAD_STATES = {InstanceState.BUILDING, InstanceState.MIGRATING, InstanceState.DELETING}
_IO_STATES = {InstanceState.BUILDING, InstanceState.MIGRATING}

Clock = Callable[[], datetime]
# How long, and how many, ended claims a node keeps reporting (see ResourceTracker.
# claim_ended): longer than the scheduler's claim TTL (5 min by default), so a snapshot
# the pusher replaced by a newer one, or a watch event a scheduler missed, is made good by
# the next changed snapshot while the claim could still count.
RELEASED_KEEP = timedelta(minutes=15)
RELEASED_MAX = 1000

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CapacityPolicy:
    """What the operator keeps back for the host and how far each resource is over-committed."""

    reserved_host_cpus: int = 0
    reserved_host_memory_mb: int = 0
    reserved_host_disk_mb: int = 0
    cpu_allocation_ratio: float = 1.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0

    @classmethod
    def from_settings(cls, settings: ComputeSettings) -> CapacityPolicy:
        return cls(
            settings.reserved_host_cpus,
            settings.reserved_host_memory_mb,
            settings.reserved_host_disk_mb,
            settings.cpu_allocation_ratio,
            settings.ram_allocation_ratio,
            settings.disk_allocation_ratio,
        )

    @property
    def reserved(self) -> Resources:
        # Disk is counted in GiB: a partly reserved GiB is not available.
        return Resources(
            self.reserved_host_cpus,
            self.reserved_host_memory_mb,
            math.ceil(self.reserved_host_disk_mb / 1024),
        )


# A bare-metal node is never shared, so nothing is kept back and nothing over-committed.
BARE_METAL = CapacityPolicy()


def reserve_misfit(policy: CapacityPolicy, nodename: str, total: Resources) -> str | None:
    """Why the reserved amounts cannot fit `total`, or None. As in Placement, what is kept
    back for the host comes out of the node's own total, before any over-commit."""
    checks = (
        ("BERTH_RESERVED_HOST_CPUS", "vcpus", ""),
        ("BERTH_RESERVED_HOST_MEMORY_MB", "memory_mb", " MiB"),
        ("BERTH_RESERVED_HOST_DISK_MB", "disk_gb", " GiB"),
    )
    for variable, field, unit in checks:
        held, capacity = getattr(policy.reserved, field), getattr(total, field)
        if held > capacity:
            return (
                f"{variable} keeps back {held}{unit}, more than node {nodename} has "
                f"({capacity}{unit}); lower it or give the node more"
            )
    return None


@dataclass(frozen=True)
class _Dimension:
    """How one resource is named in messages and which ratio applies to it."""

    field: str
    what: str  # follows the amount: "8 vCPUs", "8192 MiB of memory"
    unit: str
    ratio: str
    ceiling: int  # the most the node service accepts as used


_DIMENSIONS = (
    _Dimension("vcpus", "vCPUs", "", "cpu_allocation_ratio", MAX_VCPUS),
    _Dimension("memory_mb", "of memory", "MiB", "ram_allocation_ratio", MAX_MEMORY_MB),
    _Dimension("disk_gb", "of disk", "GiB", "disk_allocation_ratio", MAX_DISK_GB),
)


def _amount(value: int, unit: str) -> str:
    return f"{value} {unit}" if unit else str(value)


class ResourceTracker:
    """The final guard on one node's capacity, and the source of its snapshots."""

    def __init__(
        self,
        host: str,
        inventory: NodeInventory,
        node_uuid: str,
        state: AgentState,
        policy: CapacityPolicy,
        *,
        pusher: SnapshotPusher | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.host = host
        self.inventory = inventory
        self.node_uuid = node_uuid
        self.pusher = pusher
        self._state = state
        self._host_policy = policy
        # Claims and the state writes that follow them happen one at a time per node.
        self.lock = asyncio.Lock()
        # The node service orders snapshots by (boot_epoch, sequence).
        self.boot_epoch = clock()
        self.sequence = 0
        self.last_snapshot: node_pb2.ResourceSnapshot | None = None
        self._clock = clock
        # Claim id -> when its instance ended here, oldest first.
        self._released: dict[str, datetime] = {}

    @property
    def nodename(self) -> str:
        return self.inventory.nodename

    @property
    def policy(self) -> CapacityPolicy:
        return BARE_METAL if self.inventory.whole_machine else self._host_policy

    def instances(self) -> list[InstanceRecord]:
        return sorted(self._state.instances_on(self.nodename).values(), key=lambda r: r.uuid)

    def usage(self, instances: Iterable[InstanceRecord] | None = None) -> Resources:
        instances = list(self.instances() if instances is None else instances)
        if self.inventory.whole_machine:
            return self.inventory.total if instances else Resources()
        used = self.policy.reserved
        for record in instances:
            used += record.resources
        return used

    # -- claims ------------------------------------------------------------------------

    def instance_claim(self, record: InstanceRecord) -> None:
        """Record `record` on this node if it may go here and fits; ResourceExhausted says
        why it may not."""
        self.check_resource_class(record)
        self.check_fits(record.resources)
        self._state.put(record)

    def check_resource_class(self, record: InstanceRecord) -> None:
        """The class the instance's flavor asks for must be the one the node offers: a
        bare-metal node takes only an instance that asks for its class (its vCPUs, memory
        and disk are no inventory of their own), a node of VMs only one that asks for none.
        The scheduler places so; this is the last guard against a build sent anyway."""
        wanted, offered = record.resource_class, self.inventory.resource_class
        if wanted == offered and (wanted or not self.inventory.whole_machine):
            return
        node = self.nodename
        if not wanted and offered:
            why = (
                f"node {node} is a bare-metal server of resource class {offered}: it takes "
                f"only an instance whose flavor asks for that class (extra spec "
                f"resources:{offered}=1, e.g. berth boot --resource-class {offered}), not "
                "one sized in vCPUs, memory and disk"
            )
        elif not wanted:
            why = (
                f"node {node} is a bare-metal server that states no resource class, so no "
                "flavor can ask for it; give its driver a class"
            )
        elif not offered:
            why = (
                f"node {node} is a node of VMs (vCPUs, memory and disk): it has none of "
                f"resource class {wanted}, which the flavor asks for (resources:{wanted}=1); "
                "such an instance goes to a bare-metal node of that class"
            )
        else:
            why = (
                f"node {node} offers resource class {offered}, not {wanted}, which the "
                f"flavor asks for (resources:{wanted}=1)"
            )
        raise ResourceExhausted(
            why,
            reason=CLASS_MISMATCH,
            metadata={"node": node, "resource_class": offered, "requested": wanted},
        )

    def check_fits(self, request: Resources) -> None:
        if self.inventory.whole_machine:
            self._check_bare_metal(request)
            return
        instances = self.instances()
        if len(instances) >= MAX_INSTANCES_PER_NODE:
            raise ResourceExhausted(
                f"node {self.nodename} already holds {len(instances)} instances, the most one "
                "node can report",
                reason=INSUFFICIENT,
                metadata={"node": self.nodename, "resource": "instances"},
            )
        used = self.usage(instances)
        total = self.inventory.total
        policy = self.policy
        reserved = policy.reserved
        for dim in _DIMENSIONS:
            wanted = getattr(request, dim.field)
            if not wanted:
                continue
            has, held = getattr(total, dim.field), getattr(reserved, dim.field)
            ratio = getattr(policy, dim.ratio)
            # Placement's capacity: what the host keeps back is taken from the total before
            # the over-commit, and the instances use the rest (used counts reserved too).
            capacity = min(math.floor((has - held) * ratio), dim.ceiling - held)
            by_instances = getattr(used, dim.field) - held
            free = capacity - by_instances
            if wanted > has:
                raise self._refusal(
                    dim,
                    wanted,
                    free,
                    f"one instance may use at most the node's total, {_amount(has, dim.unit)}",
                    max_unit=has,
                )
            if wanted > free:
                why = (
                    f"{_amount(max(free, 0), dim.unit)} free ((total {_amount(has, dim.unit)}"
                    f" - reserved {_amount(held, dim.unit)}) × allocation ratio {ratio:g}"  # noqa: RUF001
                    f" - {_amount(by_instances, dim.unit)} used by instances)"
                )
                raise self._refusal(dim, wanted, free, why)

    def _check_bare_metal(self, request: Resources) -> None:
        taken = self.instances()
        if taken:
            raise ResourceExhausted(
                f"node {self.nodename} is a bare-metal server already taken by instance "
                f"{taken[0].uuid}",
                reason=INSUFFICIENT,
                metadata={"node": self.nodename, "instance": taken[0].uuid},
            )
        total = self.inventory.total
        for dim in _DIMENSIONS:
            wanted, has = getattr(request, dim.field), getattr(total, dim.field)
            if wanted > has:
                raise self._refusal(
                    dim, wanted, has, f"the bare-metal server has {_amount(has, dim.unit)}"
                )

    def _refusal(
        self, dim: _Dimension, wanted: int, free: int, why: str, *, max_unit: int | None = None
    ) -> ResourceExhausted:
        metadata = {
            "node": self.nodename,
            "resource": dim.field,
            "requested": str(wanted),
            "free": str(free),
        }
        if max_unit is not None:
            metadata["max_unit"] = str(max_unit)
        return ResourceExhausted(
            f"node {self.nodename} cannot hold {_amount(wanted, dim.unit)} {dim.what}: {why}",
            reason=INSUFFICIENT,
            metadata=metadata,
        )

    def claim_ended(self, claim_id: str) -> None:
        """The instance built here under `claim_id` is gone (deleted, or its build failed):
        the next snapshots report the claim as released.

        Why the node says so: the scheduler drops a claim when a snapshot names it among
        the node's instances. An instance deleted before any snapshot named it (the pusher
        sends only the newest snapshot; the node service or the scheduler may have been
        away) is never named, and its claim would hold the room until it expires. Only
        the node can tell "built and deleted" from "still on its way here": a build in
        flight is not yet in `released_claim_ids`, so no snapshot releases its claim."""
        if not claim_id:
            return
        self._released.pop(claim_id, None)
        self._released[claim_id] = self._clock()

    def released_claim_ids(self) -> list[str]:
        """The claims ended within RELEASED_KEEP (at most RELEASED_MAX), oldest first."""
        cutoff = self._clock() - RELEASED_KEEP
        for claim_id, ended in list(self._released.items()):
            if ended >= cutoff and len(self._released) <= RELEASED_MAX:
                break
            del self._released[claim_id]
        return list(self._released)

    # -- snapshots ---------------------------------------------------------------------

    def update_available_resource(self, inventory: NodeInventory) -> int:
        """Take the driver's fresh view of the node and queue a snapshot; its sequence."""
        self.inventory = inventory
        return self.queue_snapshot()

    def queue_snapshot(self) -> int:
        """Build a snapshot and hand it to the pusher; its sequence, for wait_reported()."""
        snapshot = self.snapshot()
        if self.pusher is not None:
            self.pusher.offer(snapshot)
        return snapshot.sequence

    async def wait_reported(
        self, min_sequence: int | None = None, *, timeout_s: float | None = None
    ) -> None:
        """Wait until the node service accepted a snapshot with at least this sequence
        (default: the newest built so far); TimeoutError after `timeout_s`."""
        if self.pusher is None:
            raise RuntimeError(f"node {self.nodename} has no pusher: BERTH_NODE_URL is empty")
        wanted = self.sequence if min_sequence is None else min_sequence
        await self.pusher.wait_reported(wanted, timeout_s)

    async def report_soon(self, sequence: int) -> None:
        """Give the node service up to REPORT_WAIT_S to accept snapshot `sequence` (a
        build or delete answered after it, so that `berth boot web` then `berth delete web`
        finds web); no wait while its pushes fail, no error when the time runs out: the
        pusher keeps trying."""
        if self.pusher is None or self.pusher.failing:
            return
        try:
            await self.pusher.wait_reported(sequence, REPORT_WAIT_S)
        except TimeoutError:
            log.info(
                "answering before the node service accepted the snapshot",
                extra={"node": self.nodename, "sequence": sequence},
            )

    def snapshot(self) -> node_pb2.ResourceSnapshot:
        """The whole view of the node now, with the next sequence number."""
        self.sequence += 1
        inventory, policy = self.inventory, self.policy
        instances = self.instances()
        used = self.usage(instances)
        epoch = Timestamp()
        epoch.FromDatetime(self.boot_epoch)
        if inventory.disk_available_least_gb is not None:
            disk_least = inventory.disk_available_least_gb
        else:
            disk_least = inventory.total.disk_gb - used.disk_gb
        snapshot = node_pb2.ResourceSnapshot(
            host=self.host,
            nodename=self.nodename,
            node_uuid=self.node_uuid,
            boot_epoch=epoch,
            sequence=self.sequence,
            hypervisor_type=inventory.hypervisor_type,
            hypervisor_version=inventory.hypervisor_version,
            cpu_info=inventory.cpu_info,
            total=inventory.total.to_proto(),
            used=used.to_proto(),
            disk_available_least_gb=disk_least,
            current_workload=sum(r.state in _WORKLOAD_STATES for r in instances),
            io_ops=sum(r.state in _IO_STATES for r in instances),
            host_ip=inventory.host_ip,
            cpu_allocation_ratio=policy.cpu_allocation_ratio,
            ram_allocation_ratio=policy.ram_allocation_ratio,
            disk_allocation_ratio=policy.disk_allocation_ratio,
            reserved_host_memory_mb=policy.reserved_host_memory_mb,
            reserved_host_disk_mb=policy.reserved_host_disk_mb,
            reserved_host_cpus=policy.reserved_host_cpus,
            pci_device_pools=[
                node_pb2.PciDevicePool(
                    vendor_id=p.vendor_id,
                    product_id=p.product_id,
                    numa_node=p.numa_node,
                    count=p.count,
                    tags=dict(p.tags),
                )
                for p in inventory.pci_pools
            ],
            numa_topology=node_pb2.NumaTopology(
                cells=[
                    node_pb2.NumaCell(id=c.id, cpus=c.cpus, memory_mb=c.memory_mb)
                    for c in inventory.numa_cells
                ]
            ),
            supported_instances=inventory.supported_instances,
            instances=[r.to_proto(self.host, self.node_uuid) for r in instances],
            released_claim_ids=self.released_claim_ids(),
            resource_class=inventory.resource_class,
            whole_machine=inventory.whole_machine,
        )
        self.last_snapshot = snapshot
        return snapshot
