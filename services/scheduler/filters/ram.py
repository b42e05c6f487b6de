"""RamFilter: a node must have free RAM for one instance of the flavor."""

from __future__ import annotations

from typing import Any

from services.scheduler.columns import MEMORY, BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import Request


class RamFilter(HostFilter):
    """Rejects a node without room for the flavor's memory_mb.

    Room is Placement's, the rule Nova has used since Placement replaced RamFilter:
    (total - reserved) x ram_allocation_ratio - what the instances hold - pending claims
    (the `free` column). The host's reserved memory is never overcommitted, and pending
    claims count so that instances placed moments ago, not yet in the node's report, do
    not land on top of each other. As Placement's `max_unit`, one instance may not ask
    more than the node's total, whatever the ratio.

    A whole-machine node offers its total while empty and nothing once taken; whether a
    request may take one at all is ResourceClassFilter's question.
    """

    name = "RamFilter"

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        wanted = request.resources.memory_mb
        return (view.free[MEMORY] >= wanted) & (view.total[MEMORY] >= wanted)
