"""CPUWeigher: prefer nodes with more free vCPUs (spread), or fewer with a negative multiplier."""

from __future__ import annotations

from services.scheduler.context import PlacementContext
from services.scheduler.hoststate import HostState
from services.scheduler.request import Request
from services.scheduler.weighers.base import Weigher


class CPUWeigher(Weigher):
    """Prefers the node with the most free vCPUs: total x cpu_allocation_ratio - used -
    pending claims.

    Spreading by CPU keeps noisy neighbours apart on overcommitted nodes; a negative
    multiplier packs instead. minval 0 as in Nova, so an overcommitted node weighs as a
    full one.
    """

    name = "CPUWeigher"
    minval = 0.0

    def weigh(self, host: HostState, request: Request, context: PlacementContext) -> float:
        return float(host.free_vcpus)
