"""The scheduler's weighers by Nova name, their multipliers, and Nova's weighing arithmetic."""

from __future__ import annotations

from collections.abc import Sequence

from services.scheduler.context import PlacementContext
from services.scheduler.hoststate import HostState
from services.scheduler.request import Request
from services.scheduler.settings import SchedulerSettings
from services.scheduler.weighers.base import Weigher
from services.scheduler.weighers.cpu import CPUWeigher
from services.scheduler.weighers.disk import DiskWeigher
from services.scheduler.weighers.io_ops import IoOpsWeigher
from services.scheduler.weighers.num_instances import NumInstancesWeigher
from services.scheduler.weighers.ram import RAMWeigher

WEIGHERS: dict[str, type[Weigher]] = {
    cls.name: cls
    for cls in (RAMWeigher, CPUWeigher, DiskWeigher, IoOpsWeigher, NumInstancesWeigher)
}

# The setting that holds each weigher's multiplier (Nova's option names).
MULTIPLIER_SETTINGS: dict[str, str] = {
    RAMWeigher.name: "ram_weight_multiplier",
    CPUWeigher.name: "cpu_weight_multiplier",
    DiskWeigher.name: "disk_weight_multiplier",
    IoOpsWeigher.name: "io_ops_weight_multiplier",
    NumInstancesWeigher.name: "num_instances_weight_multiplier",
}


def build_weighers(settings: SchedulerSettings) -> list[Weigher]:
    """Every weigher whose multiplier is not 0: a zero adds 0 to every node, so it cannot
    change the order and would only cost a pass over the nodes."""
    weighers = []
    for name, cls in WEIGHERS.items():
        multiplier = float(getattr(settings, MULTIPLIER_SETTINGS[name]))
        if multiplier != 0.0:
            weighers.append(cls(multiplier))
    return weighers


def normalize(
    values: Sequence[float], minval: float | None = None, maxval: float | None = None
) -> list[float]:
    """Nova's normalisation (nova/weights.py) to [0, 1].

    Values are clipped to `minval` / `maxval` when the weigher sets them; the range is
    from `minval` (else the smallest value) to `maxval` (else the largest). When the range
    is empty every value is 0.0: the weigher cannot tell the nodes apart.
    """
    if not values:
        return []
    if minval is not None:
        values = [v if v > minval else minval for v in values]
    if maxval is not None:
        values = [v if v < maxval else maxval for v in values]
    low = min(values) if minval is None else minval
    high = max(values) if maxval is None else maxval
    if low == high:
        return [0.0] * len(values)
    span = float(high - low)
    return [(v - low) / span for v in values]


def weigh_all(
    hosts: Sequence[HostState],
    weighers: Sequence[Weigher],
    request: Request,
    context: PlacementContext,
) -> list[float]:
    """The final weight of each node, in `hosts` order: sum over weighers of multiplier x
    normalised raw weight. Higher wins.

    As in Nova, one node (or none) is not weighed at all: with nothing to compare it to,
    every weight would be an artefact of minval/maxval.
    """
    count = len(hosts)
    totals = [0.0] * count
    if count <= 1:
        return totals
    for weigher in weighers:
        weigh = weigher.weigh
        raw = [weigh(host, request, context) for host in hosts]
        normalised = normalize(raw, weigher.minval, weigher.maxval)
        multiplier = weigher.multiplier
        totals = [total + multiplier * norm for total, norm in zip(totals, normalised, strict=True)]
    return totals


__all__ = [
    "MULTIPLIER_SETTINGS",
    "WEIGHERS",
    "Weigher",
    "build_weighers",
    "normalize",
    "weigh_all",
]
