"""SameHostFilter: the `same_host` hint puts an instance beside the named instances."""

from __future__ import annotations

from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.hoststate import HostState
from services.scheduler.request import Request


class SameHostFilter(HostFilter):
    """Rejects a node whose host does not hold one of the hinted instances.

    Users ask for this to keep chatty instances on one host. The runner resolves the
    hinted uuids to hosts once per request (`context.same_hosts`), so a node costs one set
    lookup. When none of the hinted instances is anywhere, no host has them and nothing
    passes, as in Nova: silently placing the instance elsewhere would break the promise.
    """

    name = "SameHostFilter"

    def applies(self, request: Request) -> bool:
        return bool(request.hints.same_host)

    def passes(self, host: HostState, request: Request, context: PlacementContext) -> bool:
        return host.host in context.same_hosts
