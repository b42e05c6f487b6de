"""IoOpsWeigher: prefer nodes with fewer I/O-heavy operations in progress."""

from __future__ import annotations

from services.scheduler.context import PlacementContext
from services.scheduler.hoststate import HostState
from services.scheduler.request import Request
from services.scheduler.weighers.base import Weigher


class IoOpsWeigher(Weigher):
    """Weighs a node by its reported I/O-heavy operations (builds, resizes, snapshots).

    The raw weight grows with the load, so the default multiplier -1.0 makes idle nodes
    win: a build queued behind others is slow and slows them. A positive multiplier would
    prefer busy nodes. minval 0 as in Nova.
    """

    name = "IoOpsWeigher"
    minval = 0.0

    def weigh(self, host: HostState, request: Request, context: PlacementContext) -> float:
        return float(host.io_ops)
