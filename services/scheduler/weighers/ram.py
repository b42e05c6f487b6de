"""RAMWeigher: prefer nodes with more free RAM (spread), or less with a negative multiplier."""

from __future__ import annotations

import numpy as np

from services.scheduler.columns import MEMORY, FloatArray, View
from services.scheduler.weighers.base import Weigher


class RAMWeigher(Weigher):
    """Prefers the node with the most free RAM: Nova's `free_ram_mb`.

    Raw weight: total - used - pending claims, in MB, where `used` is what the node
    reports (its instances plus the host's reserved memory). This is Nova's
    nova/scheduler/weights/ram.py (`host_state.free_ram_mb`, set from the compute node's
    memory_mb - memory_mb_used, less what consume_from_request took): the allocation ratio
    does not enter it. With the default multiplier 1.0 instances spread, leaving the most
    headroom on every node; a negative multiplier packs them onto the fullest nodes,
    keeping whole nodes free for large flavors. minval 0 as in Nova: an overcommitted node
    (negative free) weighs as a full one.
    """

    name = "RAMWeigher"
    minval = 0.0

    def raw(self, view: View) -> FloatArray:
        return (view.total[MEMORY] - view.used[MEMORY] - view.claimed[MEMORY]).astype(np.float64)
