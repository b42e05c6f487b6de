"""Terse builders for the scheduler's unit tests: a node, a fleet, a request, settings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.filters.runner import FilterRun
from services.scheduler.hoststate import ZERO, HostFacts, HostState, Resources
from services.scheduler.mirror import Mirror
from services.scheduler.request import Flavor, Hints, Request
from services.scheduler.settings import SchedulerSettings
from services.scheduler.store.placement import PendingClaim

R = Resources

_FACT_FIELDS = {f.name for f in fields(HostFacts)} - {"host"}
_FLAVOR_FIELDS = {f.name for f in fields(Flavor)}
_HINT_FIELDS = {f.name for f in fields(Hints)}
FAR_FUTURE_MS = 2**62


@dataclass(frozen=True)
class Node:
    """A node's report, its host's facts and its pending claims."""

    state: HostState
    facts: HostFacts
    claims: tuple[PendingClaim, ...] = ()

    @property
    def host(self) -> str:
        return self.state.host


def _take(overrides: dict[str, Any], names: set[str]) -> dict[str, Any]:
    return {name: overrides.pop(name) for name in list(overrides) if name in names}


def make_host(**overrides: Any) -> Node:
    """A healthy 16-core, 32 GiB, 1000 GiB QEMU node in zone `nova`, nothing used.

    HostState fields and HostFacts fields (service_up, availability_zone,
    aggregate_metadata, ...) may both be given; `facts=` replaces the facts whole;
    `claimed=` (what pending claims hold) and `claim_count=` add pending claims.
    """
    facts_overrides = _take(overrides, _FACT_FIELDS)
    claimed = overrides.pop("claimed", ZERO)
    claim_count = overrides.pop("claim_count", 1 if claimed != ZERO else 0)
    facts = overrides.pop("facts", None)
    host = overrides.pop("host", "host-1")
    values: dict[str, Any] = {
        "node_uuid": f"uuid-{host}",
        "host": host,
        "nodename": f"{host}-node",
        "generation": 1,
        "hypervisor_type": "QEMU",
        "total": R(16, 32768, 1000),
        "used": ZERO,
    }
    values.update(overrides)
    if facts is None:
        facts = HostFacts(
            host=host, **{"service_up": True, "availability_zone": "nova"} | facts_overrides
        )
    state = HostState(**values)
    # The first claim holds everything claimed, the others nothing: only the sum counts.
    claims = tuple(
        PendingClaim(
            f"{state.node_uuid}.{index:016x}",
            state.node_uuid,
            f"claimed-{host}-{index}",
            claimed if index == 0 else ZERO,
            FAR_FUTURE_MS,
        )
        for index in range(claim_count)
    )
    return Node(state, facts, claims)


def make_bare_metal(**overrides: Any) -> Node:
    """An empty bare-metal server of class CUSTOM_BAREMETAL: 32 cores, 128 GiB, 500 GiB."""
    values: dict[str, Any] = {
        "hypervisor_type": "ironic",
        "resource_class": "CUSTOM_BAREMETAL",
        "whole_machine": True,
        "total": R(32, 131072, 500),
    }
    values.update(overrides)
    return make_host(**values)


def fleet(nodes: Iterable[Node]) -> Mirror:
    mirror = Mirror(size=16)
    for node in nodes:
        if node.facts.host:
            mirror.set_facts(node.facts)
        mirror.put_node(node.state, [])
        for claim in node.claims:
            mirror.add_claim(claim)
    return mirror


def verdict(
    host_filter: HostFilter,
    node: Node,
    request: Request,
    *,
    others: Sequence[Node] = (),
    group_hosts: Iterable[str] = (),
) -> bool:
    """What the runner concludes of `node` (in a fleet with `others`): the filter must
    apply, then decide the node — over all rows and over the node's row alone alike."""
    assert host_filter.applies(request), f"{host_filter.name} should apply to {request}"
    mirror = fleet([node, *others])
    context = PlacementContext(mirror, set(group_hosts))
    run = FilterRun([host_filter], request, context)
    row = mirror.row_of[node.state.node_uuid]
    every_row = run.mask(mirror.view())
    one_row = run.mask(mirror.view(np.array([row])))
    assert bool(every_row[row]) == bool(one_row[0])
    return bool(every_row[row])


def make_request(**overrides: Any) -> Request:
    """One instance of a 1-vCPU, 2 GiB, 20 GiB flavor with no zone and no hints.

    Flavor fields (vcpus, memory_mb, root_gb, swap_mb, extra_specs, ...) and Hints fields
    (same_host, group_policy, ...) may be given alongside Request fields.
    """
    flavor: dict[str, Any] = {"name": "m1.small", "vcpus": 1, "memory_mb": 2048, "root_gb": 20}
    flavor.update(_take(overrides, _FLAVOR_FIELDS))
    hints = _take(overrides, _HINT_FIELDS)
    values: dict[str, Any] = {
        "flavor": Flavor(**flavor),
        "num_instances": 1,
        "instance_uuids": ("instance-1",),
        "hints": Hints(**hints),
    }
    values.update(overrides)
    return Request(**values)


def make_settings(**overrides: Any) -> SchedulerSettings:
    return SchedulerSettings(**overrides)
