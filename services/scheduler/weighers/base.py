"""What every weigher is: a raw number per node, normalised by the runner, times a multiplier."""

from __future__ import annotations

from typing import ClassVar

from services.scheduler.context import PlacementContext
from services.scheduler.hoststate import HostState
from services.scheduler.request import Request


class Weigher:
    """Subclasses set `name` (and `minval` / `maxval` where the raw value has natural bounds,
    as Nova's weighers do) and implement `weigh`. Higher weights win; a negative
    multiplier turns spreading into packing."""

    name: ClassVar[str]
    minval: ClassVar[float | None] = None
    maxval: ClassVar[float | None] = None

    def __init__(self, multiplier: float) -> None:
        self.multiplier = multiplier

    def weigh(self, host: HostState, request: Request, context: PlacementContext) -> float:
        raise NotImplementedError
