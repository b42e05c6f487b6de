"""DifferentHostFilter: the `different_host` hint keeps an instance off the hinted hosts."""

from __future__ import annotations

from typing import Any

from services.scheduler.columns import BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import Request


class DifferentHostFilter(HostFilter):
    """Rejects a node whose host holds one of the hinted instances.

    Users ask for this so one host failure cannot take down both an instance and its peer.
    The runner resolves the hinted uuids to hosts once per request
    (`context.different_hosts`); hinted instances that are nowhere exclude nothing.
    """

    name = "DifferentHostFilter"
    shareable = False

    def applies(self, request: Request) -> bool:
        return bool(request.hints.different_host)

    def prepare(self, request: Request, context: PlacementContext) -> Any:
        return context.hosts_of(request.hints.different_host)

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        return ~context.on_hosts(prepared, view)
