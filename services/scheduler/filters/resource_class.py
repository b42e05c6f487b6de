"""ResourceClassFilter: bare-metal nodes only for flavors that ask for their class."""

from __future__ import annotations

from typing import Any

from services.scheduler.columns import BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import Request


class ResourceClassFilter(HostFilter):
    """Rejects a whole-machine node unless the flavor asks for its resource class and the
    node is free; rejects every other node for a flavor that asks for a class.

    This is Placement's rule, which Nova applies before any filter: an Ironic node offers
    one unit of a custom class (`CUSTOM_BAREMETAL_GOLD`) and no VCPU, MEMORY_MB or
    DISK_GB, so only a flavor with `resources:CUSTOM_BAREMETAL_GOLD=1` lands there, and it
    takes the node whole. Without it a 2-vCPU instance could take a 64-core server because
    it happened to weigh best. What a node offers is what it reports (`resource_class`,
    `whole_machine`), never guessed from its hypervisor type. Built in: it always runs,
    whatever BERTH_ENABLED_FILTERS says.
    """

    name = "ResourceClassFilter"

    def prepare(self, request: Request, context: PlacementContext) -> Any:
        wanted = request.flavor.resource_class
        if not wanted:
            return None
        return context.mirror.resource_classes.find(wanted) or -1  # -1: a class no node has

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        if prepared is None:
            return ~view.whole_machine
        free = (view.num_instances == 0) & (view.claim_count == 0)
        return view.whole_machine & (view.resource_class_id == prepared) & free
