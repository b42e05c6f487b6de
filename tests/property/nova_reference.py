"""Nova's filtering and weighing in plain Python, one node at a time: the reference the
vectorised scheduler is checked against. Written from Nova's and Placement's sources
(nova/weights.py, nova/scheduler/weights/*.py, HostState.consume_from_request,
placement's allocation check), not from Berth's columns, so the two can disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.scheduler.hoststate import ZERO, HostFacts, HostState, Resources
from services.scheduler.request import Request
from services.scheduler.settings import SchedulerSettings


@dataclass(frozen=True)
class RefNode:
    state: HostState
    facts: HostFacts
    claimed: Resources = ZERO
    claim_count: int = 0


def _room(total: int, reserved: int, ratio: float, used: int, claimed: int) -> int:
    """Placement: an allocation fits while used + amount <= (total - reserved) x ratio;
    `used` here is the node's report, which counts the reserved amount as used."""
    return math.floor((total - reserved) * ratio) - (used - reserved) - claimed


def first_rejection(node: RefNode, request: Request, settings: SchedulerSettings) -> str | None:
    """The name of the first default filter that rejects the node, or None."""
    s, f, want = node.state, node.facts, request.resources
    wanted_class = request.flavor.resource_class
    if s.whole_machine:
        if not wanted_class or s.resource_class != wanted_class:
            return "ResourceClassFilter"
        if s.num_instances or node.claim_count:
            return "ResourceClassFilter"
    elif wanted_class:
        return "ResourceClassFilter"
    if not (f.service_up and not f.service_disabled):
        return "ComputeFilter"
    if request.availability_zone and f.availability_zone != request.availability_zone:
        return "AvailabilityZoneFilter"
    if request.hypervisor_type and s.hypervisor_type.lower() != request.hypervisor_type.lower():
        return "ImagePropertiesFilter"
    if s.whole_machine:
        reserved = Resources()
        ratios = (1.0, 1.0, 1.0)
    else:
        reserved = Resources(
            s.reserved_host_cpus,
            s.reserved_host_memory_mb,
            math.ceil(s.reserved_host_disk_mb / 1024),
        )
        ratios = (s.ram_allocation_ratio, s.cpu_allocation_ratio, s.disk_allocation_ratio)
    checks = (
        ("RamFilter", "memory_mb", ratios[0]),
        ("CoreFilter", "vcpus", ratios[1]),
        ("DiskFilter", "disk_gb", ratios[2]),
    )
    for name, field, ratio in checks:
        total = getattr(s.total, field)
        amount = getattr(want, field)
        room = _room(
            total,
            getattr(reserved, field),
            ratio,
            getattr(s.used, field),
            getattr(node.claimed, field),
        )
        if amount > room or amount > total:
            return name
    if s.num_instances + node.claim_count >= settings.max_instances_per_host:
        return "NumInstancesFilter"
    if s.io_ops >= settings.max_io_ops_per_host:
        return "IoOpsFilter"
    return None


def raw_weights(node: RefNode) -> dict[str, float]:
    """Each weigher's raw value (nova/scheduler/weights/*.py after consume_from_request)."""
    s, c = node.state, node.claimed
    return {
        "RAMWeigher": s.total.memory_mb - s.used.memory_mb - c.memory_mb,
        "CPUWeigher": s.total.vcpus * s.cpu_allocation_ratio - (s.used.vcpus + c.vcpus),
        "DiskWeigher": s.total.disk_gb - s.used.disk_gb - c.disk_gb,
        "IoOpsWeigher": s.io_ops,
        "NumInstancesWeigher": s.num_instances + node.claim_count,
    }


MINVAL = {"RAMWeigher": 0, "CPUWeigher": 0, "DiskWeigher": 0, "IoOpsWeigher": 0}
ORDER = ("RAMWeigher", "CPUWeigher", "DiskWeigher", "IoOpsWeigher", "NumInstancesWeigher")


def weights(nodes: list[RefNode], multipliers: dict[str, float]) -> list[float]:
    """nova/weights.py BaseWeightHandler.get_weighed_objects, weigher by weigher."""
    totals = [0.0] * len(nodes)
    if len(nodes) <= 1:
        return totals
    raws = [raw_weights(n) for n in nodes]
    for name in ORDER:
        multiplier = multipliers.get(name, 0.0)
        if multiplier == 0.0:
            continue
        values = [raw[name] for raw in raws]
        if name in MINVAL:
            values = [max(v, MINVAL[name]) for v in values]
        low = float(MINVAL.get(name, min(values)))
        high = float(max(values))
        if low == high:
            continue
        for i, value in enumerate(values):
            totals[i] += multiplier * ((value - low) / (high - low))
    return totals


def ranking(nodes: list[RefNode], multipliers: dict[str, float]) -> list[int]:
    """Indices of `nodes`, best first; equals keep their order (Python's stable sort)."""
    weighed = weights(nodes, multipliers)
    return sorted(range(len(nodes)), key=lambda i: weighed[i], reverse=True)


def multipliers_of(settings: SchedulerSettings) -> dict[str, float]:
    return {
        "RAMWeigher": settings.ram_weight_multiplier,
        "CPUWeigher": settings.cpu_weight_multiplier,
        "DiskWeigher": settings.disk_weight_multiplier,
        "IoOpsWeigher": settings.io_ops_weight_multiplier,
        "NumInstancesWeigher": settings.num_instances_weight_multiplier,
    }


# Every resource weigher negative: Nova's way to pack instances onto the fullest nodes.
PACK_MULTIPLIERS = {
    "ram_weight_multiplier": -1.0,
    "cpu_weight_multiplier": -1.0,
    "disk_weight_multiplier": -1.0,
    "io_ops_weight_multiplier": -1.0,
}
