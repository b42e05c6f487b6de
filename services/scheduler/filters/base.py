"""What every filter is: a name operators know and a yes/no about one node for a request."""

from __future__ import annotations

from typing import ClassVar

from services.scheduler.context import PlacementContext
from services.scheduler.hoststate import HostState
from services.scheduler.request import Request
from services.scheduler.settings import SchedulerSettings


class HostFilter:
    """Subclasses set `name` and implement `passes`; `applies` lets the runner skip a
    filter for a whole request when the request does not ask what it checks (a hint that
    is absent), so unused filters cost nothing per node."""

    name: ClassVar[str]

    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings

    def applies(self, request: Request) -> bool:
        return True

    def passes(self, host: HostState, request: Request, context: PlacementContext) -> bool:
        raise NotImplementedError
