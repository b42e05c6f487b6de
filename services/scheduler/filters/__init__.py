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
from services.scheduler.filters.same_host import SameHostFilter
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


def build_filters(settings: SchedulerSettings) -> list[HostFilter]:
    """One instance of each enabled filter, in `settings.enabled_filters` order (the
    operator puts cheap, decisive filters first)."""
    unknown = [name for name in settings.enabled_filters if name not in FILTERS]
    if unknown:
        raise ValueError(f"unknown filter '{unknown[0]}'; known: {', '.join(sorted(FILTERS))}")
    return [FILTERS[name](settings) for name in settings.enabled_filters]


__all__ = ["FILTERS", "HostFilter", "build_filters"]
