"""SameHostFilter: the `same_host` hint puts an instance beside the named instances."""

from __future__ import annotations

from typing import Any

from services.scheduler.columns import BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import Request


class SameHostFilter(HostFilter):
    """Rejects a node whose host does not hold one of the hinted instances.

    Users ask for this to keep chatty instances on one host. The runner resolves the
    hinted uuids to hosts once per request (`context.same_hosts`), so a node costs one set
    lookup. When none of the hinted instances is anywhere, no host has them and nothing
    passes, as in Nova: silently placing the instance elsewhere would break the promise.
    """

    name = "SameHostFilter"
    shareable = False

    def applies(self, request: Request) -> bool:
        return bool(request.hints.same_host)

    def prepare(self, request: Request, context: PlacementContext) -> Any:
        return context.hosts_of(request.hints.same_host)

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        return context.on_hosts(prepared, view)
