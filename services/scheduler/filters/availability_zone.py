"""AvailabilityZoneFilter: a request for a zone only lands on that zone's nodes."""

from __future__ import annotations

from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.hoststate import HostState
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

    def passes(self, host: HostState, request: Request, context: PlacementContext) -> bool:
        return host.facts.availability_zone == request.availability_zone
