"""The scheduler's weighers by Nova name, their multipliers, and Nova's weighing arithmetic."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.scheduler.columns import FloatArray, RowIndex, View
from services.scheduler.mirror import Mirror
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


class Weighing:
    """Nova's weighing (nova/weights.py) over the columns: each weigher's raw value per
    node, clipped to its minval / maxval, normalised to [0, 1] over the candidates (from
    minval, else the smallest, to maxval, else the largest; all 0.0 when they are equal),
    times its multiplier, summed in weigher order. Higher wins.

    Raw values depend only on a node's own row, so they are cached per weigher and only
    the rows the mirror wrote since the last request are recomputed.
    """

    def __init__(self, weighers: Sequence[Weigher], mirror: Mirror) -> None:
        self.weighers = list(weighers)
        self._mirror = mirror
        self._multipliers = [w.multiplier for w in self.weighers]
        # One row per weigher, one column per mirror row: the raw values, clipped.
        self._raw: FloatArray = np.zeros((len(self.weighers), 0))
        self._version = -1

    def _refresh(self) -> None:
        mirror = self._mirror
        if self._raw.shape[1] != mirror.columns.size:
            self._raw = np.zeros((len(self.weighers), mirror.columns.size))
            self._fill(mirror.view(), slice(None))
        elif self._version != mirror.version:
            rows = mirror.changed_since(self._version)
            self._fill(mirror.view(rows), rows)
        self._version = mirror.version

    def _fill(self, view: View, rows: RowIndex | slice) -> None:
        for index, weigher in enumerate(self.weighers):
            self._raw[index, rows] = _clipped(weigher, weigher.raw(view))

    def weigh(self, rows: RowIndex) -> FloatArray:
        """The final weight of each of these rows' nodes (`rows` sorted, as the filters'
        candidates are), in `rows` order.

        As in Nova, one node (or none) is not weighed at all: with nothing to compare it
        to, every weight would be an artefact of minval / maxval.
        """
        totals = np.zeros(len(rows))
        if len(rows) <= 1 or not self.weighers:
            return totals
        self._refresh()
        first, last = int(rows[0]), int(rows[-1])
        gapless = last - first + 1 == len(rows)  # sorted, so a range: read it in place
        values = self._raw[:, first : last + 1] if gapless else np.take(self._raw, rows, axis=1)
        highest = values.max(axis=1)
        scaled = np.empty(len(rows))
        for index, weigher in enumerate(self.weighers):
            row = values[index]  # read only: it may be the cache itself
            low = row.min() if weigher.minval is None else weigher.minval
            high = highest[index] if weigher.maxval is None else weigher.maxval
            if low == high:
                continue  # every node weighs 0.0: the weigher cannot tell them apart
            if low:
                np.subtract(row, low, out=scaled)
                scaled /= high - low
            else:
                np.divide(row, high - low, out=scaled)
            multiplier = self._multipliers[index]
            if multiplier == -1.0:
                totals -= scaled  # the same bits as adding -1.0 x scaled, one pass fewer
            else:
                if multiplier != 1.0:
                    scaled *= multiplier
                totals += scaled
        return totals


def _clipped(weigher: Weigher, raw: FloatArray) -> FloatArray:
    """Nova's BaseWeigher.weigh_objects: no raw weight beyond the weigher's bounds."""
    if weigher.minval is not None:
        np.maximum(raw, weigher.minval, out=raw)
    if weigher.maxval is not None:
        np.minimum(raw, weigher.maxval, out=raw)
    return raw


__all__ = [
    "MULTIPLIER_SETTINGS",
    "WEIGHERS",
    "Weigher",
    "Weighing",
    "build_weighers",
]
