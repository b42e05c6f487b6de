"""What every filter is: a name operators know and a vectorised yes/no over nodes."""

from __future__ import annotations

from typing import Any, ClassVar

from services.scheduler.columns import BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.request import Request
from services.scheduler.settings import SchedulerSettings


class HostFilter:
    """Subclasses set `name` and implement `mask`.

    Per request the runner asks `applies` (a filter whose question the request does not
    ask is skipped: unused filters cost nothing), then `prepare` once (resolve hints to
    hosts, parse specs: Nomad's SetTaskGroup, Kubernetes' PreFilter), then `mask` over all
    rows or over chosen rows, as often as the request needs. `mask` returns one bool per
    row of the view: True where the node passes.
    """

    name: ClassVar[str]
    # True when the mask depends only on the request's shape (flavor, zone, type) and each
    # node's own row: the selector may then keep it between requests of that shape and
    # re-filter only the rows written since. False for filters that resolve hosts when
    # prepared (hints, aggregates) or read the request's group.
    shareable: ClassVar[bool] = True

    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings

    def applies(self, request: Request) -> bool:
        return True

    def prepare(self, request: Request, context: PlacementContext) -> Any:
        return None

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        raise NotImplementedError
