"""The scheduler's own metrics: placements by result, which filters said no, lost claim
races, and its HostState cache (nodes, pending claims, how fresh), read at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from services.scheduler.keeper import CacheKeeper

PLACEMENTS = Counter(
    "berth_scheduler_placements_total",
    "Instances placed (claimed), and requests refused, by result: placed, no_valid_host.",
    ["result"],
)
FILTER_REJECTIONS = Counter(
    "berth_scheduler_filter_rejections_total",
    "In requests answered 'no valid host': nodes each filter removed (ClaimRefused: races "
    "lost to another request).",
    ["filter"],
)
CLAIM_CONFLICTS = Counter(
    "berth_scheduler_claim_conflicts_total",
    "Claims Redis refused because another request took the room first; the next node was tried.",
)


class CacheState(Collector):
    def __init__(self, keeper: CacheKeeper) -> None:
        self._keeper = keeper

    def collect(self) -> Iterator[Metric]:
        keeper = self._keeper
        mirror = keeper.mirror
        yield GaugeMetricFamily(
            "berth_scheduler_cache_ready",
            "1 once the HostState cache is built (until then requests are refused).",
            value=1.0 if keeper.ready.is_set() else 0.0,
        )
        yield GaugeMetricFamily(
            "berth_scheduler_cache_nodes", "Nodes in the HostState cache.", value=len(mirror)
        )
        yield GaugeMetricFamily(
            "berth_scheduler_pending_claims",
            "Claims held and not yet confirmed by their node's report.",
            value=float(mirror.columns.claim_count.sum()),
        )
        yield GaugeMetricFamily(
            "berth_scheduler_cache_change_age_seconds",
            "Seconds since the last change from the registry or node service reached the "
            "cache (a quiet fleet ages too; a stuck watch ages while others' do not).",
            value=time.monotonic() - keeper.last_change,
        )
