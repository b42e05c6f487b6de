"""ServerGroupAffinityFilter: members of an `affinity` server group share a host."""

from __future__ import annotations

from typing import Any

import numpy as np

from services.scheduler.columns import BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import GroupPolicy, Request


class ServerGroupAffinityFilter(HostFilter):
    """Rejects a node whose host is not where the group's members already are.

    An affinity group trades failure isolation for locality (low latency between
    members). The group's first member may go anywhere, since it defines where the group
    lives; `context.group_hosts` includes hosts chosen earlier in this very request, so
    the rest of a multi-instance request follows the first.
    """

    name = "ServerGroupAffinityFilter"
    shareable = False

    def applies(self, request: Request) -> bool:
        return request.hints.group_policy is GroupPolicy.AFFINITY

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        if not context.group_hosts:
            return np.ones(len(view), np.bool_)
        return context.on_hosts(context.group_hosts, view)
