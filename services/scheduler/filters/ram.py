"""RamFilter: a node must have free RAM for one instance of the flavor."""

from __future__ import annotations

from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.hoststate import HostState
from services.scheduler.request import Request


class RamFilter(HostFilter):
    """Rejects a node whose free RAM is less than the flavor's memory_mb.

    Free RAM is total x ram_allocation_ratio - used - pending claims (`HostState.free`).
    `used` already includes the host's reserved memory, so reserved is not subtracted a
    second time here; pending claims count so that instances placed moments ago, not yet
    in the node's report, are not placed on top of each other.

    A bare-metal node is taken whole (Ironic): once it holds an instance or a claim it has
    nothing free, and while empty it takes any flavor that asks no more than the machine
    has (allocation ratios do not apply to a physical machine).
    """

    name = "RamFilter"

    def passes(self, host: HostState, request: Request, context: PlacementContext) -> bool:
        # A taken bare-metal node has nothing free; an empty one offers the whole machine.
        return not host.taken and request.flavor.memory_mb <= host.free_memory_mb
