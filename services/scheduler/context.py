"""What filters may ask beyond one HostState: where instances are, where a group is."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(slots=True)
class PlacementContext:
    """Per request. `hosts_of` answers "on which hosts are these instances?" from the
    scheduler's mirror (reported instances and pending claims); `group_hosts` are the hosts
    of the request's server group so far, including hosts chosen earlier in this request."""

    hosts_of: Callable[[Iterable[str]], frozenset[str]] = lambda uuids: frozenset()
    group_hosts: set[str] = field(default_factory=set)
    # Filled per request for SameHost/DifferentHost (hint uuids resolved once, not per node).
    same_hosts: frozenset[str] = frozenset()
    different_hosts: frozenset[str] = frozenset()
