"""DiskWeigher: prefer nodes with more free disk (spread), or less with a negative multiplier."""

from __future__ import annotations

from services.scheduler.context import PlacementContext
from services.scheduler.hoststate import HostState
from services.scheduler.request import Request
from services.scheduler.weighers.base import Weigher


class DiskWeigher(Weigher):
    """Prefers the node with the most free disk (Nova's `free_disk_mb`, here in GiB): total x
    disk_allocation_ratio - used - pending claims.

    Spreading leaves room on every node for ephemeral growth and snapshots; a negative
    multiplier packs instead. minval 0 as in Nova.
    """

    name = "DiskWeigher"
    minval = 0.0

    def weigh(self, host: HostState, request: Request, context: PlacementContext) -> float:
        return float(host.free_disk_gb)
