"""NumInstancesFilter: a node holds at most `max_instances_per_host` instances."""

from __future__ import annotations

from typing import Any

from services.scheduler.columns import BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import Request


class NumInstancesFilter(HostFilter):
    """Rejects a node that already has `max_instances_per_host` instances.

    Counts reported instances plus pending claims (Nova's count after
    consume_from_request), so a burst of requests cannot push a node past the
    cap before its next report. The cap bounds the blast radius of one host failure and
    the per-host bookkeeping, whatever the flavor sizes.
    """

    name = "NumInstancesFilter"

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        pending = view.num_instances + view.claim_count
        return pending < self.settings.max_instances_per_host
