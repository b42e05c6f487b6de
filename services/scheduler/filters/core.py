"""CoreFilter: a node must have free vCPUs for one instance of the flavor."""

from __future__ import annotations

from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.hoststate import HostState
from services.scheduler.request import Request


class CoreFilter(HostFilter):
    """Rejects a node whose free vCPUs are fewer than the flavor's vcpus.

    Free vCPUs are floor(total x cpu_allocation_ratio) - used - pending claims
    (`HostState.free`); the ratio is how much CPU overcommit the operator accepts, and
    `used` already includes the host's reserved CPUs.

    A bare-metal node is taken whole: a taken one has nothing free, an empty one takes any
    flavor that asks no more cores than the machine has.
    """

    name = "CoreFilter"

    def passes(self, host: HostState, request: Request, context: PlacementContext) -> bool:
        # A taken bare-metal node has nothing free; an empty one offers the whole machine.
        return not host.taken and request.flavor.vcpus <= host.free_vcpus
