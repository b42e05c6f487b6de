"""RAMWeigher: prefer nodes with more free RAM (spread), or less with a negative multiplier."""

from __future__ import annotations

from services.scheduler.context import PlacementContext
from services.scheduler.hoststate import HostState
from services.scheduler.request import Request
from services.scheduler.weighers.base import Weigher


class RAMWeigher(Weigher):
    """Prefers the node with the most free RAM (Nova's `free_ram_mb`).

    With the default multiplier 1.0 instances spread, leaving the most headroom on every
    node; a negative multiplier packs them onto the fullest nodes, keeping whole nodes
    free for large flavors. minval 0 as in Nova: free RAM normalises against zero rather
    than against the emptiest node, and an overcommitted node (negative free) weighs as
    a full one.
    """

    name = "RAMWeigher"
    minval = 0.0

    def weigh(self, host: HostState, request: Request, context: PlacementContext) -> float:
        return float(host.free_memory_mb)
