"""NumInstancesWeigher: weigh nodes by how many instances they hold (off by default)."""

from __future__ import annotations

from services.scheduler.context import PlacementContext
from services.scheduler.hoststate import HostState
from services.scheduler.request import Request
from services.scheduler.weighers.base import Weigher


class NumInstancesWeigher(Weigher):
    """Weighs a node by its instances plus pending claims (`HostState.pending_instances`).

    A negative multiplier spreads by count (fewest instances wins) whatever their sizes;
    a positive one packs. Nova's default multiplier is 0.0, which leaves it out. No
    minval, as in Nova: counts normalise between the emptiest and the fullest node.
    """

    name = "NumInstancesWeigher"

    def weigh(self, host: HostState, request: Request, context: PlacementContext) -> float:
        return float(host.pending_instances)
