"""RequestSpec (proto) -> Request, field by field; bad input is INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Callable, Iterable

from berth.client.errors import InvalidArgument
from berth.client.flavors import DEFAULT_FLAVORS
from berth.v1 import common_pb2, scheduler_pb2

from services.common import validation
from services.scheduler.request import Flavor, GroupPolicy, Hints, Request

# The widest sizes accepted: the node service's own ceilings for a node.
MAX_VCPUS = 1 << 24
MAX_MEMORY_MB = 1 << 42
MAX_DISK_GB = 1 << 40
MAX_EXTRA_SPECS = 100
MAX_HINT_ITEMS = 1000


def request_from_spec(
    spec: scheduler_pb2.RequestSpec, *, max_instances: int, zones: Callable[[], Iterable[str]]
) -> Request:
    """`zones` gives the zones a request may name (asked only when it names one)."""
    count = spec.num_instances
    if not 1 <= count <= max_instances:
        raise InvalidArgument.field(
            "spec.num_instances", f"must be from 1 to {max_instances} (got {count})"
        )
    zone = validation.name("spec.availability_zone", spec.availability_zone, required=False)
    known_zones = sorted(set(zones())) if zone else []
    if zone and zone not in known_zones:
        raise InvalidArgument.field(
            "spec.availability_zone",
            f"unknown availability zone {zone!r}; known zones: {', '.join(known_zones) or 'none'}",
        )
    return Request(
        flavor=_flavor(spec.flavor) if spec.HasField("flavor") else _missing_flavor(),
        num_instances=count,
        instance_uuids=_instance_uuids(spec.instance_uuids, count),
        project_id=validation.text("spec.project_id", spec.project_id),
        user_id=validation.text("spec.user_id", spec.user_id),
        availability_zone=zone,
        hypervisor_type=validation.name(
            "spec.hypervisor_type", spec.hypervisor_type, required=False
        ),
        hints=_hints(spec.hints),
        seed=spec.seed if spec.HasField("seed") else None,
    )


def _missing_flavor() -> Flavor:
    raise InvalidArgument.field("spec.flavor", "must be set: a flavor name or explicit sizes")


def _flavor(message: scheduler_pb2.Flavor) -> Flavor:
    name = validation.name("spec.flavor.name", message.name, required=False)
    sized = any(
        (message.vcpus, message.memory_mb, message.root_gb, message.ephemeral_gb, message.swap_mb)
    )
    if name and not sized:
        if name not in DEFAULT_FLAVORS:
            raise InvalidArgument.field(
                "spec.flavor.name",
                f"unknown flavor {name!r}; known flavors: {', '.join(DEFAULT_FLAVORS)} "
                "(or give explicit sizes)",
            )
        vcpus, memory_mb, root_gb = DEFAULT_FLAVORS[name]
        return Flavor(name, vcpus, memory_mb, root_gb, extra_specs=_extra_specs(message))
    for field, value, least, most in (
        ("vcpus", message.vcpus, 1, MAX_VCPUS),
        ("memory_mb", message.memory_mb, 1, MAX_MEMORY_MB),
        ("root_gb", message.root_gb, 0, MAX_DISK_GB),
        ("ephemeral_gb", message.ephemeral_gb, 0, MAX_DISK_GB),
        ("swap_mb", message.swap_mb, 0, MAX_MEMORY_MB),
    ):
        if not least <= value <= most:
            raise InvalidArgument.field(
                f"spec.flavor.{field}", f"must be from {least} to {most} (got {value})"
            )
    return Flavor(
        name,
        message.vcpus,
        message.memory_mb,
        message.root_gb,
        message.ephemeral_gb,
        message.swap_mb,
        _extra_specs(message),
    )


RESOURCES_SCOPE = "resources"
RESOURCE_CLASS = re.compile(r"CUSTOM_[A-Z0-9_]+")


def _extra_specs(message: scheduler_pb2.Flavor) -> dict[str, str]:
    if len(message.extra_specs) > MAX_EXTRA_SPECS:
        raise InvalidArgument.field(
            "spec.flavor.extra_specs", f"at most {MAX_EXTRA_SPECS} (got {len(message.extra_specs)})"
        )
    classes = []
    for key, value in message.extra_specs.items():
        validation.name("spec.flavor.extra_specs", key)
        validation.text(f"spec.flavor.extra_specs[{key}]", value)
        scope, _, resource_class = key.partition(":")
        if scope == RESOURCES_SCOPE and not resource_class.startswith("CUSTOM_"):
            continue  # resources:VCPU=0 and the like: a bare-metal flavor's zeros
        if scope == RESOURCES_SCOPE:
            field = f"spec.flavor.extra_specs[{key}]"
            if not RESOURCE_CLASS.fullmatch(resource_class):
                raise InvalidArgument.field(
                    field, "a custom resource class is CUSTOM_ then A-Z, 0-9 and _"
                )
            if value.strip() != "1":
                raise InvalidArgument.field(
                    field, "must be 1: a bare-metal node of a class is taken whole, once"
                )
            classes.append(resource_class)
    if len(classes) > 1:
        raise InvalidArgument.field(
            "spec.flavor.extra_specs",
            f"asks for {len(classes)} resource classes ({', '.join(sorted(classes))}); "
            "one node offers one, so ask for one",
        )
    return dict(message.extra_specs)


def _instance_uuids(given: Iterable[str], count: int) -> tuple[str, ...]:
    uuids = [validation.uuid(f"spec.instance_uuids[{i}]", u) for i, u in enumerate(given)]
    if not uuids:
        return tuple(str(uuidlib.uuid4()) for _ in range(count))
    if len(uuids) != count:
        raise InvalidArgument.field(
            "spec.instance_uuids",
            f"gives {len(uuids)} uuids for {count} instances: give one per instance, or none",
        )
    if len(set(uuids)) != len(uuids):
        raise InvalidArgument.field("spec.instance_uuids", "names an instance twice")
    return tuple(uuids)


def _hint_list(
    field: str, values: Iterable[str], check: Callable[[str, str], str]
) -> frozenset[str]:
    """At most MAX_HINT_ITEMS values, each passing `check` (a uuid or a name)."""
    values = list(values)
    if len(values) > MAX_HINT_ITEMS:
        raise InvalidArgument.field(field, f"at most {MAX_HINT_ITEMS} (got {len(values)})")
    return frozenset(check(f"{field}[{i}]", v) for i, v in enumerate(values))


_NO_HINTS = Hints()


def _hints(message: scheduler_pb2.SchedulerHints) -> Hints:
    if not message.ListFields():
        return _NO_HINTS  # most requests give none
    validation.enum(
        "spec.hints.group_policy",
        message.group_policy,
        common_pb2.GroupPolicy,
        allow_unspecified=True,
    )
    group = validation.name("spec.hints.group", message.group, required=False)
    policy = GroupPolicy.from_proto(message.group_policy)
    if group and policy is GroupPolicy.NONE:
        raise InvalidArgument.field(
            "spec.hints.group_policy", "must be set with a group: affinity or anti-affinity"
        )
    if policy is not GroupPolicy.NONE and not group:
        raise InvalidArgument.field("spec.hints.group", "must name the server group of the policy")
    return Hints(
        same_host=_hint_list("spec.hints.same_host", message.same_host, validation.uuid),
        different_host=_hint_list(
            "spec.hints.different_host", message.different_host, validation.uuid
        ),
        force_hosts=_hint_list("spec.hints.force_hosts", message.force_hosts, validation.name),
        force_nodes=_hint_list("spec.hints.force_nodes", message.force_nodes, validation.name),
        ignore_hosts=_hint_list("spec.hints.ignore_hosts", message.ignore_hosts, validation.name),
        group=group,
        group_policy=policy,
        same_aggregate_as_host=validation.name(
            "spec.hints.same_aggregate_as_host", message.same_aggregate_as_host, required=False
        ),
    )


def claim_ids(values: Iterable[str]) -> list[str]:
    values = list(values)
    if not values:
        raise InvalidArgument.field("claim_ids", "must name at least one claim")
    if len(values) > MAX_HINT_ITEMS:
        raise InvalidArgument.field("claim_ids", f"at most {MAX_HINT_ITEMS} (got {len(values)})")
    for i, value in enumerate(values):
        validation.name(f"claim_ids[{i}]", value, max_length=64)
    return values
