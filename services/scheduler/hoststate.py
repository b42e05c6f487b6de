"""HostState records: one node's report and one host's registry facts, as the scheduler
keeps them. The numbers filters and weighers read live in columns (`columns.py`); these
records are what a row was loaded from and what the scheduler answers with.

Capacity is Placement's: what instances may hold is (total - reserved) x allocation ratio,
and what they hold is `used` minus the reserved amounts (a node's report counts the host's
reserved amounts as used, as Nova's resource tracker does). A whole-machine node (a
bare-metal server) is taken whole: ratios and reserved amounts do not apply to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple


class Resources(NamedTuple):
    """Amounts of the three resources. A tuple: cheap to build by the hundred thousand (a
    listing), and a column takes it as it is."""

    vcpus: int = 0
    memory_mb: int = 0
    disk_gb: int = 0

    # Element-wise, unlike a tuple's concatenation.
    def __add__(self, other: Resources) -> Resources:  # type: ignore[override]
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


def amounts(vcpus: int, memory_mb: int, disk_gb: int) -> Resources:
    """Resources(vcpus, memory_mb, disk_gb) without the NamedTuple's Python-level __new__
    (a third of the cost): what listings of 100,000 nodes build three times a node."""
    return _new_tuple(Resources, (vcpus, memory_mb, disk_gb))


_new_tuple = tuple.__new__


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
    """One node as its latest report describes it (pending claims are counted apart).

    `reserved`, `capacity` and `usage` are worked out once, when the report is taken (the
    columns and Redis both read them). A record is never changed once built (a new report
    replaces it), but it is not frozen: a listing builds 100,000 of them, and a frozen
    dataclass's __init__ costs twice as much."""

    node_uuid: str
    host: str
    nodename: str
    generation: int
    hypervisor_type: str = ""
    # Placement's resource class of a whole-machine node ("" for a host of VMs).
    resource_class: str = ""
    whole_machine: bool = False
    total: Resources = ZERO
    # As reported: the instances' resources plus the host's reserved amounts.
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
    # Held back for the host (disk in whole GiB, rounded up as the agent counts it).
    reserved: Resources = field(init=False, compare=False, repr=False)
    # What instances may hold in all: Placement's (total - reserved) x ratio, floored; a
    # whole machine's total.
    capacity: Resources = field(init=False, compare=False, repr=False)
    # What the node's instances hold (Placement's `used`): reported use less reserved.
    usage: Resources = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        total_v, total_m, total_d = self.total
        used_v, used_m, used_d = self.used
        if self.whole_machine:
            reserved, capacity, usage = ZERO, self.total, self.used
        else:
            res_v, res_m = self.reserved_host_cpus, self.reserved_host_memory_mb
            res_d = math.ceil(self.reserved_host_disk_mb / 1024)
            reserved = amounts(res_v, res_m, res_d)
            capacity = amounts(
                math.floor((total_v - res_v) * self.cpu_allocation_ratio),
                math.floor((total_m - res_m) * self.ram_allocation_ratio),
                math.floor((total_d - res_d) * self.disk_allocation_ratio),
            )
            usage = amounts(used_v - res_v, used_m - res_m, used_d - res_d)
        self.reserved = reserved
        self.capacity = capacity
        self.usage = usage
