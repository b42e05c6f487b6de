"""ServerGroupAffinityFilter: members of an `affinity` server group share a host."""

from __future__ import annotations

from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.hoststate import HostState
from services.scheduler.request import GroupPolicy, Request


class ServerGroupAffinityFilter(HostFilter):
    """Rejects a node whose host is not where the group's members already are.

    An affinity group trades failure isolation for locality (low latency between
    members). The group's first member may go anywhere, since it defines where the group
    lives; `context.group_hosts` includes hosts chosen earlier in this very request, so
    the rest of a multi-instance request follows the first.
    """

    name = "ServerGroupAffinityFilter"

    def applies(self, request: Request) -> bool:
        return request.hints.group_policy is GroupPolicy.AFFINITY

    def passes(self, host: HostState, request: Request, context: PlacementContext) -> bool:
        group_hosts = context.group_hosts
        return not group_hosts or host.host in group_hosts
