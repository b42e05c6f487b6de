"""DiskFilter: a node must have free disk for one instance's root, ephemeral and swap."""

from __future__ import annotations

from typing import Any

from services.scheduler.columns import DISK, BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import Request


class DiskFilter(HostFilter):
    """Rejects a node without room for the instance's disk.

    The instance's disk is root + ephemeral + swap, swap rounded up to whole GiB
    (`Request.resources`), as Nova's DiskFilter counts all three on local disk. Room is
    Placement's: (total - reserved) x disk_allocation_ratio - what the instances hold -
    pending claims (the `free` column), reserved_host_disk_mb counted in whole GiB; one
    instance may not ask more than the node's total.
    """

    name = "DiskFilter"

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        wanted = request.resources.disk_gb
        return (view.free[DISK] >= wanted) & (view.total[DISK] >= wanted)
