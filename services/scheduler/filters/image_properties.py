"""ImagePropertiesFilter: a request for a hypervisor type only lands on nodes of that type."""

from __future__ import annotations

from typing import Any

from services.scheduler.columns import BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import Request


class ImagePropertiesFilter(HostFilter):
    """Rejects a node whose hypervisor type is not the one the request asks for.

    Nova reads the image's `img_hv_type`: an image built for one hypervisor will not boot on
    another. Berth carries that property as `Request.hypervisor_type`. The comparison
    ignores case because drivers report "QEMU" where users write "qemu" (Nova canonicalises
    both the same way). A request without a hypervisor type does not apply the filter.
    """

    name = "ImagePropertiesFilter"

    def applies(self, request: Request) -> bool:
        return bool(request.hypervisor_type)

    def prepare(self, request: Request, context: PlacementContext) -> Any:
        return context.mirror.hypervisor_types.find(request.hypervisor_type.lower())

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        if prepared is None:  # a type no node has
            return view.hypervisor_id < 0
        return view.hypervisor_id == prepared
