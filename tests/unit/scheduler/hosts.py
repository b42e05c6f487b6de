"""Terse builders for the scheduler's unit tests: a node, a request, settings."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from services.scheduler.hoststate import ZERO, HostFacts, HostState, Resources
from services.scheduler.request import Flavor, Hints, Request
from services.scheduler.settings import SchedulerSettings

R = Resources

_FACT_FIELDS = {f.name for f in fields(HostFacts)} - {"host"}
_FLAVOR_FIELDS = {f.name for f in fields(Flavor)}
_HINT_FIELDS = {f.name for f in fields(Hints)}


def _take(overrides: dict[str, Any], names: set[str]) -> dict[str, Any]:
    return {name: overrides.pop(name) for name in list(overrides) if name in names}


def make_host(**overrides: Any) -> HostState:
    """A healthy 16-core, 32 GiB, 1000 GiB QEMU node in zone `nova`, nothing used.

    HostState fields and HostFacts fields (service_up, availability_zone,
    aggregate_metadata, ...) may both be given; `facts=` replaces the facts whole.
    """
    facts_overrides = _take(overrides, _FACT_FIELDS)
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
    if "facts" not in values:
        facts = {"service_up": True, "availability_zone": "nova", **facts_overrides}
        values["facts"] = HostFacts(host=host, **facts)
    return HostState(**values)


def make_bare_metal(**overrides: Any) -> HostState:
    """An empty Ironic node: 32 cores, 128 GiB, 500 GiB."""
    values: dict[str, Any] = {"hypervisor_type": "ironic", "total": R(32, 131072, 500)}
    values.update(overrides)
    return make_host(**values)


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
