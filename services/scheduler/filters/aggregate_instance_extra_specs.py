"""AggregateInstanceExtraSpecsFilter: a flavor's extra specs must match its host's aggregates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.scheduler.columns import BoolArray, View
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.filters.extra_specs_ops import match
from services.scheduler.request import Request

SCOPE = "aggregate_instance_extra_specs"

Specs = tuple[tuple[str, str], ...]


def considered_specs(extra_specs: Mapping[str, str]) -> Specs:
    """The (key, requirement) pairs this filter checks, scope stripped.

    Unscoped keys and keys scoped `aggregate_instance_extra_specs:` are ours; any other
    scope (`hw:`, `capabilities:`, `quota:`, `resources:`, ...) belongs to another filter or to the
    driver, so it is skipped rather than failing every host that lacks such a key.
    """
    considered = []
    for key, requirement in extra_specs.items():
        scope, colon, rest = key.partition(":")
        if colon:
            if scope != SCOPE:
                continue
            key = rest
        considered.append((key, requirement))
    return tuple(considered)


class AggregateInstanceExtraSpecsFilter(HostFilter):
    """Rejects a node unless every considered extra spec of the flavor is met by its host's
    aggregate metadata.

    This is how operators reserve hardware for flavors: an aggregate `ssd=true` and a
    flavor asking `ssd=true` send that flavor only to those hosts. A key the host's
    aggregates do not set fails the node; when several aggregates set it, one value that
    satisfies the requirement is enough. Requirements may use Nova's operators
    (see extra_specs_ops).
    """

    name = "AggregateInstanceExtraSpecsFilter"
    shareable = False

    def applies(self, request: Request) -> bool:
        return bool(considered_specs(request.flavor.extra_specs))

    def prepare(self, request: Request, context: PlacementContext) -> Any:
        """The hosts whose aggregates satisfy every spec (only hosts that have aggregate
        metadata can: the others fail any spec)."""
        specs = considered_specs(request.flavor.extra_specs)
        mirror = context.mirror
        return [
            host
            for host in mirror.hosts_with_metadata
            if _satisfies(mirror.facts[host].aggregate_metadata, specs)
        ]

    def mask(
        self, view: View, request: Request, context: PlacementContext, prepared: Any
    ) -> BoolArray:
        return context.on_hosts(prepared, view)


def _satisfies(metadata: Mapping[str, frozenset[str]], specs: Specs) -> bool:
    for key, requirement in specs:
        values = metadata.get(key)
        if not values or not any(match(value, requirement) for value in values):
            return False
    return True
