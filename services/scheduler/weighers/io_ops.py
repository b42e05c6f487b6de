"""IoOpsWeigher: prefer nodes with fewer I/O-heavy operations in progress."""

from __future__ import annotations

import numpy as np

from services.scheduler.columns import FloatArray, View
from services.scheduler.weighers.base import Weigher


class IoOpsWeigher(Weigher):
    """Weighs a node by its reported I/O-heavy operations (builds, resizes, snapshots).

    Raw weight: the node's `io_ops` (Nova's `num_io_ops`, nova/scheduler/weights/io_ops.py).
    It grows with the load, so the default multiplier -1.0 makes idle nodes win: a build
    queued behind others is slow and slows them. minval 0 as in Nova.
    """

    name = "IoOpsWeigher"
    minval = 0.0

    def raw(self, view: View) -> FloatArray:
        return view.io_ops.astype(np.float64)
