"""What every weigher is: a raw number per node (Nova's formula, over columns), normalised by
the runner, times a multiplier."""

from __future__ import annotations

from typing import ClassVar

from services.scheduler.columns import FloatArray, View


class Weigher:
    """Subclasses set `name` (and `minval` / `maxval` where the raw value has natural bounds,
    as Nova's weighers do) and implement `raw` over any view of the rows. Raw values depend
    only on a node's own row, so the runner caches them and recomputes changed rows only.
    Higher weights win; a negative multiplier turns spreading into packing."""

    name: ClassVar[str]
    minval: ClassVar[float | None] = None
    maxval: ClassVar[float | None] = None

    def __init__(self, multiplier: float) -> None:
        self.multiplier = multiplier

    def raw(self, view: View) -> FloatArray:
        raise NotImplementedError
