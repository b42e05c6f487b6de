"""DiskWeigher: prefer nodes with more free disk (spread), or less with a negative multiplier."""

from __future__ import annotations

import numpy as np

from services.scheduler.columns import DISK, FloatArray, View
from services.scheduler.weighers.base import Weigher


class DiskWeigher(Weigher):
    """Prefers the node with the most free disk: Nova's `free_disk_mb`, here in GiB.

    Raw weight: total - used - pending claims, as nova/scheduler/weights/disk.py
    (`host_state.free_disk_mb`: local_gb - local_gb_used, less what consume_from_request
    took); the allocation ratio does not enter it. GiB instead of MiB scales every value
    by the same factor, which normalisation removes. Spreading leaves room on every node
    for ephemeral growth and snapshots; a negative multiplier packs. minval 0 as in Nova.
    """

    name = "DiskWeigher"
    minval = 0.0

    def raw(self, view: View) -> FloatArray:
        return (view.total[DISK] - view.used[DISK] - view.claimed[DISK]).astype(np.float64)
