"""The scheduler's filters by Nova name, and the enabled ones built in configured order."""

from __future__ import annotations

from services.scheduler.filters.aggregate_instance_extra_specs import (
    AggregateInstanceExtraSpecsFilter,
)
from services.scheduler.filters.availability_zone import AvailabilityZoneFilter
from services.scheduler.filters.base import HostFilter
from services.scheduler.filters.compute import ComputeFilter
from services.scheduler.filters.core import CoreFilter
from services.scheduler.filters.different_host import DifferentHostFilter
from services.scheduler.filters.disk import DiskFilter
from services.scheduler.filters.image_properties import ImagePropertiesFilter
from services.scheduler.filters.io_ops import IoOpsFilter
from services.scheduler.filters.num_instances import NumInstancesFilter
from services.scheduler.filters.ram import RamFilter
from services.scheduler.filters.resource_class import ResourceClassFilter
from services.scheduler.filters.same_host import SameHostFilter
from services.scheduler.filters.scheduler_hints import SchedulerHintsFilter
from services.scheduler.filters.server_group_affinity import ServerGroupAffinityFilter
from services.scheduler.filters.server_group_anti_affinity import ServerGroupAntiAffinityFilter
from services.scheduler.settings import SchedulerSettings

FILTERS: dict[str, type[HostFilter]] = {
    cls.name: cls
    for cls in (
        ComputeFilter,
        AvailabilityZoneFilter,
        ImagePropertiesFilter,
        RamFilter,
        CoreFilter,
        DiskFilter,
        NumInstancesFilter,
        IoOpsFilter,
        AggregateInstanceExtraSpecsFilter,
        SameHostFilter,
        DifferentHostFilter,
        ServerGroupAffinityFilter,
        ServerGroupAntiAffinityFilter,
    )
}


# Always run, first: the hosts a request names, and what a node offers (Nova applies
# both before its filters, in the host manager and in Placement).
BUILT_IN: tuple[type[HostFilter], ...] = (SchedulerHintsFilter, ResourceClassFilter)


def build_filters(settings: SchedulerSettings) -> list[HostFilter]:
    """The built-in filters, then one instance of each enabled filter in
    `settings.enabled_filters` order (the operator puts cheap, decisive filters first)."""
    built_in = {cls.name for cls in BUILT_IN}
    unknown = [n for n in settings.enabled_filters if n not in FILTERS and n not in built_in]
    if unknown:
        raise ValueError(f"unknown filter '{unknown[0]}'; known: {', '.join(sorted(FILTERS))}")
    enabled = [FILTERS[name](settings) for name in settings.enabled_filters if name in FILTERS]
    return [cls(settings) for cls in BUILT_IN] + enabled


__all__ = ["BUILT_IN", "FILTERS", "HostFilter", "build_filters"]
