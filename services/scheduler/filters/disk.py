"""DiskFilter: a node must have free disk for one instance's root, ephemeral and swap."""

from __future__ import annotations

from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.hoststate import HostState
from services.scheduler.request import Request


class DiskFilter(HostFilter):
    """Rejects a node whose free disk is less than the instance's disk.

    The instance's disk is root + ephemeral + swap, swap rounded up to whole GiB
    (`Request.resources`), as Nova's DiskFilter counts all three on local disk. Free disk
    is floor(total x disk_allocation_ratio) - used - pending claims (`HostState.free`);
    `used` already includes the host's reserved disk.

    A bare-metal node is taken whole: a taken one has nothing free, an empty one takes any
    flavor whose disk fits on the machine.
    """

    name = "DiskFilter"

    def passes(self, host: HostState, request: Request, context: PlacementContext) -> bool:
        # A taken bare-metal node has nothing free; an empty one offers the whole machine.
        return not host.taken and request.resources.disk_gb <= host.free_disk_gb
