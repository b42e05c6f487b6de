"""SchedulerHints: the hosts and nodes a request names (forced, ignored, same aggregate)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from services.scheduler.columns import BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.request import Request


@dataclass(frozen=True, slots=True)
class _Named:
    # None: the hint does not narrow the pool.
    forced_hosts: frozenset[str] | None
    forced_nodes: frozenset[str] | None
    aggregate_peers: frozenset[str] | None
    ignored: frozenset[str]


class SchedulerHintsFilter(HostFilter):
    """Keeps only the nodes the request's host hints allow.

    `force_hosts` / `force_nodes` (an admin's "build it there") narrow the pool to those
    hosts or nodenames, either one sufficing; `same_aggregate_as_host` (maintenance moves
    stay in the host's aggregates) to the hosts sharing an aggregate with it;
    `ignore_hosts` removes hosts. Nova's host manager applies these before its filters;
    here it is one more mask, reported as `SchedulerHints` when nothing fits. Built in.
    """

    name = "SchedulerHints"
    shareable = False

    def applies(self, request: Request) -> bool:
        hints = request.hints
        return bool(
            hints.force_hosts
            or hints.force_nodes
            or hints.ignore_hosts
            or hints.same_aggregate_as_host
        )

    def prepare(self, request: Request, context: PlacementContext) -> Any:
        hints = request.hints
        forced = hints.force_hosts or hints.force_nodes
        peers = None
        if hints.same_aggregate_as_host:
            peers = frozenset(_aggregate_peers(context, hints.same_aggregate_as_host))
        return _Named(
            forced_hosts=hints.force_hosts if forced else None,
            forced_nodes=hints.force_nodes if forced else None,
            aggregate_peers=peers,
            ignored=hints.ignore_hosts,
        )

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        named: _Named = prepared
        allowed = np.ones(len(view), np.bool_)
        if named.forced_hosts is not None and named.forced_nodes is not None:
            forced = context.on_hosts(named.forced_hosts, view)
            if named.forced_nodes:
                forced |= _named_nodes(context, named.forced_nodes, view)
            allowed &= forced
        if named.aggregate_peers is not None:
            allowed &= context.on_hosts(named.aggregate_peers, view)
        if named.ignored:
            allowed &= ~context.on_hosts(named.ignored, view)
        return allowed


def _named_nodes(context: PlacementContext, nodenames: frozenset[str], view: View) -> BoolArray:
    mirror = context.mirror
    node_uuids = [u for name in nodenames for u in mirror.node_uuids_named(name)]
    every_row = mirror.rows_of_nodes(node_uuids)
    return every_row if view.rows is None else every_row[view.rows]


def _aggregate_peers(context: PlacementContext, host: str) -> set[str]:
    mirror = context.mirror
    own = mirror.facts.get(host)
    if own is None or not own.aggregates:
        return set()
    mine = set(own.aggregates)
    return {
        h for h in mirror.hosts_with_aggregates if mine.intersection(mirror.facts[h].aggregates)
    }
