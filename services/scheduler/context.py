"""What filters may ask beyond the columns: where instances are, where a group is."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from services.scheduler.columns import BoolArray, View
from services.scheduler.mirror import Mirror


@dataclass(slots=True)
class PlacementContext:
    """Per request. `group_hosts` are the hosts of the request's server group so far,
    including hosts chosen earlier in this request (the selector adds each choice)."""

    mirror: Mirror = field(default_factory=Mirror)
    group_hosts: set[str] = field(default_factory=set)

    def hosts_of(self, instance_uuids: Iterable[str]) -> frozenset[str]:
        """The hosts holding these instances, reported or claimed."""
        return self.mirror.hosts_of(instance_uuids)

    def on_hosts(self, hosts: Iterable[str], view: View) -> BoolArray:
        """True where the view's node is on one of `hosts`."""
        return self.mirror.hosts.mask(hosts)[view.host_id]
