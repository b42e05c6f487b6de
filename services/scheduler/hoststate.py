"""HostState: the scheduler's view of one node, and what a request asks of it.

A node's free capacity is what a claim could still take: total x allocation ratio - used
(which includes the host's reserved amounts) - pending claims. A bare-metal node (Ironic
semantics) is taken whole: it fits a request only while it holds no instance and no claim.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

# Nodes of this hypervisor type are physical servers that one instance takes whole.
BARE_METAL_TYPES = frozenset({"ironic"})


@dataclass(frozen=True, slots=True)
class Resources:
    vcpus: int = 0
    memory_mb: int = 0
    disk_gb: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.vcpus + other.vcpus,
            self.memory_mb + other.memory_mb,
            self.disk_gb + other.disk_gb,
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.vcpus - other.vcpus,
            self.memory_mb - other.memory_mb,
            self.disk_gb - other.disk_gb,
        )


ZERO = Resources()


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What the registry says about a host: its compute service, zone and aggregates."""

    host: str
    service_up: bool = False
    service_disabled: bool = False
    disabled_reason: str = ""
    availability_zone: str = ""
    # Aggregate names, sorted.
    aggregates: tuple[str, ...] = ()
    # Metadata key -> every value the host's aggregates give it (a host in two aggregates
    # that both set `ssd` has both values).
    aggregate_metadata: Mapping[str, frozenset[str]] = field(default_factory=dict)


UNKNOWN_HOST = HostFacts(host="")


@dataclass(slots=True)
class HostState:
    """One node as the scheduler sees it: the node service's report, the registry's facts
    about its host, and the claims not yet confirmed by a report."""

    node_uuid: str
    host: str
    nodename: str
    generation: int
    hypervisor_type: str = ""
    total: Resources = ZERO
    used: Resources = ZERO
    cpu_allocation_ratio: float = 1.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    reserved_host_memory_mb: int = 0
    reserved_host_disk_mb: int = 0
    reserved_host_cpus: int = 0
    num_instances: int = 0
    io_ops: int = 0
    instance_uuids: frozenset[str] = frozenset()
    # Pending (unconfirmed, unexpired) claims on this node: their sum and count.
    claimed: Resources = ZERO
    claim_count: int = 0
    facts: HostFacts = UNKNOWN_HOST

    @property
    def whole_node(self) -> bool:
        return self.hypervisor_type in BARE_METAL_TYPES

    @property
    def limit(self) -> Resources:
        """What the node may hold in all: total x allocation ratio (bare metal: total)."""
        if self.whole_node:
            return self.total
        return Resources(
            math.floor(self.total.vcpus * self.cpu_allocation_ratio),
            math.floor(self.total.memory_mb * self.ram_allocation_ratio),
            math.floor(self.total.disk_gb * self.disk_allocation_ratio),
        )

    @property
    def taken(self) -> bool:
        """A bare-metal node that holds an instance or a claim: nothing more fits."""
        return self.whole_node and bool(self.num_instances or self.claim_count)

    # Free amounts one field at a time: filters and weighers read them for every node of
    # every request, so they avoid building Resources objects.
    @property
    def free_vcpus(self) -> int:
        if self.whole_node:
            return 0 if self.taken else self.total.vcpus - self.used.vcpus
        limit = math.floor(self.total.vcpus * self.cpu_allocation_ratio)
        return limit - self.used.vcpus - self.claimed.vcpus

    @property
    def free_memory_mb(self) -> int:
        if self.whole_node:
            return 0 if self.taken else self.total.memory_mb - self.used.memory_mb
        limit = math.floor(self.total.memory_mb * self.ram_allocation_ratio)
        return limit - self.used.memory_mb - self.claimed.memory_mb

    @property
    def free_disk_gb(self) -> int:
        if self.whole_node:
            return 0 if self.taken else self.total.disk_gb - self.used.disk_gb
        limit = math.floor(self.total.disk_gb * self.disk_allocation_ratio)
        return limit - self.used.disk_gb - self.claimed.disk_gb

    @property
    def free(self) -> Resources:
        """What a new claim could still take; a taken bare-metal node has nothing free."""
        if self.taken:
            return ZERO
        return Resources(self.free_vcpus, self.free_memory_mb, self.free_disk_gb)

    @property
    def pending_instances(self) -> int:
        """Instances on the node plus those claimed for it (Nova's num_instances after
        consume_from_request)."""
        return self.num_instances + self.claim_count

    def fits(self, wanted: Resources) -> bool:
        if self.taken:
            return False
        return (
            wanted.vcpus <= self.free_vcpus
            and wanted.memory_mb <= self.free_memory_mb
            and wanted.disk_gb <= self.free_disk_gb
        )
