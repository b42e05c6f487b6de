"""ServerGroupAntiAffinityFilter: members of an `anti-affinity` server group never share a host."""

from __future__ import annotations

from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.hoststate import HostState
from services.scheduler.request import GroupPolicy, Request


class ServerGroupAntiAffinityFilter(HostFilter):
    """Rejects a node whose host already holds a member of the group.

    Anti-affinity is how users make replicas survive a host failure. `context.group_hosts`
    includes hosts chosen earlier in this very request, so two instances of one request
    never land together either.
    """

    name = "ServerGroupAntiAffinityFilter"

    def applies(self, request: Request) -> bool:
        return request.hints.group_policy is GroupPolicy.ANTI_AFFINITY

    def passes(self, host: HostState, request: Request, context: PlacementContext) -> bool:
        return host.host not in context.group_hosts
