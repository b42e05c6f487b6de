"""What a SelectDestinations request asks for, validated: flavor, count, zone and hints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from berth.client.flavors import flavor_resources
from berth.v1 import common_pb2, scheduler_pb2

from services.scheduler.hoststate import Resources


class GroupPolicy(Enum):
    NONE = ""
    AFFINITY = "affinity"
    ANTI_AFFINITY = "anti-affinity"

    @classmethod
    def from_proto(cls, value: common_pb2.GroupPolicy.ValueType) -> GroupPolicy:
        return _POLICIES.get(value, cls.NONE)


_POLICIES = {
    common_pb2.GROUP_POLICY_AFFINITY: GroupPolicy.AFFINITY,
    common_pb2.GROUP_POLICY_ANTI_AFFINITY: GroupPolicy.ANTI_AFFINITY,
}


@dataclass(frozen=True, slots=True)
class Flavor:
    name: str
    vcpus: int
    memory_mb: int
    root_gb: int = 0
    ephemeral_gb: int = 0
    swap_mb: int = 0
    extra_specs: Mapping[str, str] = field(default_factory=dict)

    @property
    def resource_class(self) -> str:
        """The custom resource class the flavor asks for (`resources:CUSTOM_X=1`, Nova's
        syntax for a bare-metal flavor), or "" for an instance of a host of VMs."""
        for key in self.extra_specs:
            scope, _, name = key.partition(":")
            if scope == "resources" and name.startswith("CUSTOM_"):
                return name
        return ""

    @property
    def resources(self) -> Resources:
        """What one instance takes, counted as the client library counts it (one rule)."""
        counted = flavor_resources(
            scheduler_pb2.Flavor(
                vcpus=self.vcpus,
                memory_mb=self.memory_mb,
                root_gb=self.root_gb,
                ephemeral_gb=self.ephemeral_gb,
                swap_mb=self.swap_mb,
            )
        )
        return Resources(counted.vcpus, counted.memory_mb, counted.disk_gb)


@dataclass(frozen=True, slots=True)
class Hints:
    same_host: frozenset[str] = frozenset()
    different_host: frozenset[str] = frozenset()
    force_hosts: frozenset[str] = frozenset()
    force_nodes: frozenset[str] = frozenset()
    ignore_hosts: frozenset[str] = frozenset()
    group: str = ""
    group_policy: GroupPolicy = GroupPolicy.NONE
    same_aggregate_as_host: str = ""


@dataclass(frozen=True, slots=True)
class Request:
    flavor: Flavor
    num_instances: int
    instance_uuids: tuple[str, ...]
    project_id: str = ""
    user_id: str = ""
    availability_zone: str = ""
    hypervisor_type: str = ""
    hints: Hints = Hints()
    seed: int | None = None
    # What one instance takes; computed once, read for every node.
    resources: Resources = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "resources", self.flavor.resources)
