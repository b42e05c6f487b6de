"""The scheduler's weighers by Nova name, their multipliers, and Nova's weighing arithmetic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.scheduler.columns import FloatArray, RowIndex, View, find_sorted
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


@dataclass
class _Weighed:
    """The last answer: for which candidates, with which bounds, the weights."""

    rows: RowIndex
    gapless: bool
    lows: list[float]
    highs: list[float]
    totals: FloatArray


class Weighing:
    """Nova's weighing (nova/weights.py) over the columns: each weigher's raw value per
    node, clipped to its minval / maxval, normalised to [0, 1] over the candidates (from
    minval, else the smallest, to maxval, else the largest; all 0.0 when they are equal),
    times its multiplier, summed in weigher order. Higher wins.

    Raw values depend only on a node's own row, so they are cached per weigher and only
    the rows the mirror wrote since the last request are recomputed. A node's weight
    depends on the others only through each weigher's bounds: when the candidates are the
    same as last time and no bound moved (a claim changed a few nodes in the middle of the
    range, the usual case), only those nodes are weighed again, with the same operations,
    so the weights are the same bits as weighing them all.
    """

    def __init__(self, weighers: Sequence[Weigher], mirror: Mirror) -> None:
        self.weighers = list(weighers)
        self._mirror = mirror
        self._multipliers = [w.multiplier for w in self.weighers]
        # One row per weigher, one column per mirror row: the raw values, clipped.
        self._raw: FloatArray = np.zeros((len(self.weighers), 0))
        self._version = -1
        self._last: _Weighed | None = None

    def _refresh(self) -> tuple[RowIndex, FloatArray] | None:
        """Bring the raw values up to date: the rows rewritten and their values before
        (None when every row was)."""
        mirror = self._mirror
        changed: tuple[RowIndex, FloatArray] | None = (_NO_ROWS, _NO_VALUES)
        if self._raw.shape[1] != mirror.columns.size:
            self._raw = np.zeros((len(self.weighers), mirror.columns.size))
            self._fill(mirror.view(), slice(None))
            changed = None
        elif self._version != mirror.version:
            rows = mirror.changed_since(self._version)
            changed = (rows, self._raw[:, rows])  # a copy: fancy indexing
            self._fill(mirror.view(rows), rows)
        self._version = mirror.version
        return changed

    def _fill(self, view: View, rows: RowIndex | slice) -> None:
        for index, weigher in enumerate(self.weighers):
            self._raw[index, rows] = _clipped(weigher, weigher.raw(view))

    def weigh(self, rows: RowIndex) -> FloatArray:
        """The final weight of each of these rows' nodes (`rows` sorted, as the filters'
        candidates are), in `rows` order; read only.

        As in Nova, one node (or none) is not weighed at all: with nothing to compare it
        to, every weight would be an artefact of minval / maxval.
        """
        if len(rows) <= 1 or not self.weighers:
            return np.zeros(len(rows))
        changed = self._refresh()
        first, last = int(rows[0]), int(rows[-1])
        gapless = last - first + 1 == len(rows)  # sorted, so a range: read it in place
        previous = self._last
        if (
            changed is not None
            and previous is not None
            and _same(previous, rows, gapless)
            and self._reweigh(previous, *changed)
        ):
            return previous.totals
        values = self._raw[:, first : last + 1] if gapless else self._raw.take(rows, axis=1)
        highest = values.max(axis=1)
        lows = [
            float(values[i].min()) if w.minval is None else w.minval
            for i, w in enumerate(self.weighers)
        ]
        highs = [
            float(highest[i]) if w.maxval is None else w.maxval for i, w in enumerate(self.weighers)
        ]
        totals = self._totals(values, lows, highs)
        totals.flags.writeable = False
        self._last = _Weighed(rows, gapless, lows, highs, totals)
        return totals

    def _reweigh(self, previous: _Weighed, changed: RowIndex, before: FloatArray) -> bool:
        """Weigh again only the candidates among `changed`, if no weigher's bounds moved;
        False when they may have (then every candidate is weighed)."""
        rows = previous.rows
        at, inside = find_sorted(rows, changed)
        at, before = at[inside], before[:, inside]
        if not len(at):
            return True
        after = self._raw[:, rows[at]]
        # Each bound over every weigher at once: on the few changed rows numpy's Python
        # wrappers (.min(), .max()) cost more than the arithmetic.
        lows_before = np.minimum.reduce(before, axis=1)
        lows_after = np.minimum.reduce(after, axis=1)
        highs_before = np.maximum.reduce(before, axis=1)
        highs_after = np.maximum.reduce(after, axis=1)
        for index, weigher in enumerate(self.weighers):
            low, high = previous.lows[index], previous.highs[index]
            # A bound held by a rewritten node may have gone with it; a new value beyond a
            # bound moves it.
            if weigher.minval is None and (lows_before[index] <= low or lows_after[index] < low):
                return False
            if weigher.maxval is None and (
                highs_before[index] >= high or highs_after[index] > high
            ):
                return False
        totals = previous.totals
        totals.flags.writeable = True
        totals[at] = self._totals(after, previous.lows, previous.highs)
        totals.flags.writeable = False
        return True

    def _totals(self, values: FloatArray, lows: list[float], highs: list[float]) -> FloatArray:
        """Nova's normalise, multiply and sum over `values` (one row per weigher)."""
        count = values.shape[1]
        totals = np.zeros(count)
        scaled = np.empty(count)
        for index in range(len(self.weighers)):
            row = values[index]  # read only: it may be the cache itself
            low, high = lows[index], highs[index]
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


_NO_ROWS: RowIndex = np.zeros(0, np.intp)
_NO_VALUES: FloatArray = np.zeros((0, 0))


def _same(previous: _Weighed, rows: RowIndex, gapless: bool) -> bool:
    """The same candidates as last time (a range is told by its ends)."""
    old = previous.rows
    if len(old) != len(rows):
        return False
    if gapless and previous.gapless:
        return bool(old[0] == rows[0])
    return old is rows or bool(np.array_equal(old, rows))


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
