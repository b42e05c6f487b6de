"""AggregateInstanceExtraSpecsFilter: a flavor's extra specs must match its host's aggregates."""

from __future__ import annotations

from collections.abc import Mapping

from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.filters.extra_specs_ops import match
from services.scheduler.hoststate import HostState
from services.scheduler.request import Flavor, Request
from services.scheduler.settings import SchedulerSettings

SCOPE = "aggregate_instance_extra_specs"

Specs = tuple[tuple[str, str], ...]


def considered_specs(extra_specs: Mapping[str, str]) -> Specs:
    """The (key, requirement) pairs this filter checks, scope stripped.

    Unscoped keys and keys scoped `aggregate_instance_extra_specs:` are ours; any other
    scope (`hw:`, `capabilities:`, `quota:`, ...) belongs to another filter or to the
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

    def __init__(self, settings: SchedulerSettings) -> None:
        super().__init__(settings)
        # The parsed specs of the last flavor seen: one request runs this per node with
        # the same flavor object, so parsing once per request is enough. Held as one
        # tuple so a concurrent request only ever replaces it whole.
        self._last: tuple[Flavor, Specs] | None = None

    def _specs(self, flavor: Flavor) -> Specs:
        last = self._last
        if last is not None and last[0] is flavor:
            return last[1]
        specs = considered_specs(flavor.extra_specs)
        self._last = (flavor, specs)
        return specs

    def applies(self, request: Request) -> bool:
        return bool(self._specs(request.flavor))

    def passes(self, host: HostState, request: Request, context: PlacementContext) -> bool:
        metadata = host.facts.aggregate_metadata
        for key, requirement in self._specs(request.flavor):
            values = metadata.get(key)
            if not values:
                return False
            if not any(match(value, requirement) for value in values):
                return False
        return True
