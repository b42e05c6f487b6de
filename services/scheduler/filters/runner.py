"""Running the filters of one request: prepare each once, AND their masks in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.scheduler.columns import BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import Request


class FilterRun:
    """The filters that apply to `request`, prepared; masks over any view of the rows."""

    def __init__(
        self, filters: Sequence[HostFilter], request: Request, context: PlacementContext
    ) -> None:
        self.request = request
        self.context = context
        self.active: list[tuple[HostFilter, Any]] = [
            (f, f.prepare(request, context)) for f in filters if f.applies(request)
        ]
        self.shareable = all(f.shareable for f, _ in self.active)

    def mask(self, view: View) -> BoolArray:
        """True where a live node passes every filter."""
        passed = view.live.copy()
        for host_filter, prepared in self.active:
            passed &= host_filter.mask(view, self.request, self.context, prepared)
        return passed

    def rejections(self, view: View) -> tuple[dict[str, int], BoolArray]:
        """How many live nodes each filter removed, in order (a node counts against the
        first filter that rejects it), and the nodes that passed them all."""
        passed = view.live.copy()
        removed: dict[str, int] = {}
        for host_filter, prepared in self.active:
            before = int(passed.sum())
            passed &= host_filter.mask(view, self.request, self.context, prepared)
            count = before - int(passed.sum())
            if count:
                removed[host_filter.name] = count
        return removed, passed

    def first_rejecting(self, view: View) -> str | None:
        """The first filter rejecting the (one-row) view's node, or None."""
        for host_filter, prepared in self.active:
            if not host_filter.mask(view, self.request, self.context, prepared).all():
                return host_filter.name
        return None
