"""NumInstancesWeigher: weigh nodes by how many instances they hold (off by default)."""

from __future__ import annotations

import numpy as np

from services.scheduler.columns import FloatArray, View
from services.scheduler.weighers.base import Weigher


class NumInstancesWeigher(Weigher):
    """Weighs a node by how many instances it holds.

    Raw weight: reported instances + pending claims (Nova's `num_instances` after
    consume_from_request, nova/scheduler/weights/num_instances.py). A negative multiplier
    spreads by count (fewest instances wins) whatever their sizes; a positive one packs.
    Nova's default multiplier is 0.0, which leaves it out. No minval, as in Nova: counts
    normalise between the emptiest and the fullest node.
    """

    name = "NumInstancesWeigher"

    def raw(self, view: View) -> FloatArray:
        return (view.num_instances + view.claim_count).astype(np.float64)
