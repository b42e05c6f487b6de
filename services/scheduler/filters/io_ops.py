"""IoOpsFilter: a node busy with `max_io_ops_per_host` I/O-heavy operations takes no more."""

from __future__ import annotations

from typing import Any

from services.scheduler.columns import BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import Request


class IoOpsFilter(HostFilter):
    """Rejects a node whose reported I/O-heavy operations reach `max_io_ops_per_host`.

    Builds, resizes, snapshots and the like saturate a host's disk and network; queueing a
    new build behind eight of them makes it slow for everyone (Nova's `num_io_ops`, the
    node's `io_workload` stat). A node at the limit is skipped rather than overloaded.
    """

    name = "IoOpsFilter"

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        return view.io_ops < self.settings.max_io_ops_per_host
