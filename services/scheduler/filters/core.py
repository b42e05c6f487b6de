"""CoreFilter: a node must have free vCPUs for one instance of the flavor."""

from __future__ import annotations

from typing import Any

from services.scheduler.columns import VCPU, BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import Request


class CoreFilter(HostFilter):
    """Rejects a node without room for the flavor's vcpus.

    Room is Placement's: (total - reserved_host_cpus) x cpu_allocation_ratio - what the
    instances hold - pending claims (the `free` column); the ratio is how much CPU
    overcommit the operator accepts. As Placement's `max_unit`, one instance may not ask
    more vCPUs than the node has cores, whatever the ratio.
    """

    name = "CoreFilter"

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        wanted = request.resources.vcpus
        return (view.free[VCPU] >= wanted) & (view.total[VCPU] >= wanted)
