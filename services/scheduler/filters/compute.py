"""ComputeFilter: only nodes whose compute service is up and enabled take new instances."""

from __future__ import annotations

from typing import Any

from services.scheduler.columns import BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import Request


class ComputeFilter(HostFilter):
    """Rejects a node whose host's compute service is down or disabled.

    A down service (no heartbeat within the registry's window) cannot build the instance,
    and disabling a service is how an operator drains a host for maintenance. A node whose
    host the registry does not know carries the default facts, which say "down", so it is
    rejected too: the scheduler never sends work to an agent nobody vouches for.
    """

    name = "ComputeFilter"

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        return view.service_up & view.service_enabled
