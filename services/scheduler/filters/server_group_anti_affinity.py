"""ServerGroupAntiAffinityFilter: members of an `anti-affinity` server group never share a host."""

from __future__ import annotations

from typing import Any

from services.scheduler.columns import BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import GroupPolicy, Request


class ServerGroupAntiAffinityFilter(HostFilter):
    """Rejects a node whose host already holds a member of the group.

    Anti-affinity is how users make replicas survive a host failure. `context.group_hosts`
    includes hosts chosen earlier in this very request, so two instances of one request
    never land together either.
    """

    name = "ServerGroupAntiAffinityFilter"
    shareable = False

    def applies(self, request: Request) -> bool:
        return request.hints.group_policy is GroupPolicy.ANTI_AFFINITY

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        return ~context.on_hosts(context.group_hosts, view)
