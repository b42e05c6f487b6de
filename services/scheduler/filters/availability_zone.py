"""AvailabilityZoneFilter: a request for a zone only lands on that zone's nodes."""

from __future__ import annotations

from typing import Any

from services.scheduler.columns import BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import Request


class AvailabilityZoneFilter(HostFilter):
    """Rejects a node whose host is not in the requested availability zone.

    The zone is a failure domain the user chose (power, network, building), so a node
    elsewhere is wrong however much room it has. The registry gives every host its zone
    (the aggregate's `availability_zone`, or the default zone), so a plain comparison is
    Nova's rule. A request without a zone may land anywhere: the filter does not apply.
    """

    name = "AvailabilityZoneFilter"

    def applies(self, request: Request) -> bool:
        return bool(request.availability_zone)

    def prepare(self, request: Request, context: PlacementContext) -> Any:
        return context.mirror.zone_names.find(request.availability_zone)

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        if prepared is None:  # a zone no host is in
            return view.zone_id < 0
        return view.zone_id == prepared
