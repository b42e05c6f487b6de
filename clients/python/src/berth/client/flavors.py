"""Instance sizes: Nova's default flavors by name, or explicit sizes; and the resource class
a flavor asks for (`resources:CUSTOM_<CLASS>=1`, a whole bare-metal node of that class)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from types import MappingProxyType

from berth.client.errors import InvalidArgument
from berth.v1 import common_pb2
from berth.v1.scheduler_pb2 import Flavor

# Nova's default flavors: name -> (vcpus, memory_mb, root_gb). `baremetal` is the flavor
# of a bare-metal node, as devstack's Ironic setup creates it: its sizes are nominal (the
# node is taken whole whatever they say; they only have to fit the machine), its extra spec
# asks for one node of the class fake-ironic reports by default.
DEFAULT_FLAVORS: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {
        "m1.tiny": (1, 512, 1),
        "m1.small": (1, 2048, 20),
        "m1.medium": (2, 4096, 40),
        "m1.large": (4, 8192, 80),
        "m1.xlarge": (8, 16384, 160),
        "baremetal": (1, 1024, 10),
    }
)

# Placement's rule for the name of a custom resource class, and its longest name.
RESOURCE_CLASS_PATTERN = re.compile(r"^CUSTOM_[A-Z0-9_]+$")
MAX_RESOURCE_CLASS = 255
# The extra spec prefix of a resource request (Nova: `resources:<CLASS>=<amount>`).
RESOURCES_PREFIX = "resources:"
# The resource class fake-ironic nodes report unless told otherwise, and the one the
# `baremetal` flavor asks for.
DEFAULT_BAREMETAL_CLASS = "CUSTOM_BAREMETAL"

# The extra specs of the default flavors that have some.
DEFAULT_EXTRA_SPECS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {"baremetal": MappingProxyType({f"{RESOURCES_PREFIX}{DEFAULT_BAREMETAL_CLASS}": "1"})}
)


def flavor_names() -> list[str]:
    """The default flavors' names: those of VMs smallest first, then `baremetal`."""
    return list(DEFAULT_FLAVORS)


def flavor(name: str) -> Flavor:
    """The default flavor `name` (`m1.small`); an unknown name is InvalidArgument naming the
    known ones."""
    sizes = DEFAULT_FLAVORS.get(name.strip())
    if sizes is None:
        raise InvalidArgument.field(
            "flavor", f"unknown flavor {name!r}; known flavors: {', '.join(DEFAULT_FLAVORS)}"
        )
    vcpus, memory_mb, root_gb = sizes
    return Flavor(
        name=name.strip(),
        vcpus=vcpus,
        memory_mb=memory_mb,
        root_gb=root_gb,
        extra_specs=dict(DEFAULT_EXTRA_SPECS.get(name.strip(), {})),
    )


def explicit_flavor(
    vcpus: int,
    memory_mb: int,
    root_gb: int = 0,
    *,
    ephemeral_gb: int = 0,
    swap_mb: int = 0,
    extra_specs: Mapping[str, str] | None = None,
) -> Flavor:
    """A nameless flavor of the given sizes: at least 1 vCPU and 1 MB of memory; disks may
    be 0 (the instance then boots from a volume, as in Nova)."""
    for field, value, least in (
        ("vcpus", vcpus, 1),
        ("memory_mb", memory_mb, 1),
        ("root_gb", root_gb, 0),
        ("ephemeral_gb", ephemeral_gb, 0),
        ("swap_mb", swap_mb, 0),
    ):
        if value < least:
            raise InvalidArgument.field(field, f"must be at least {least} (got {value})")
    return Flavor(
        vcpus=vcpus,
        memory_mb=memory_mb,
        root_gb=root_gb,
        ephemeral_gb=ephemeral_gb,
        swap_mb=swap_mb,
        extra_specs=dict(extra_specs or {}),
    )


def flavor_resources(flavor: Flavor) -> common_pb2.Resources:
    """What one instance of `flavor` takes, as the scheduler counts it: disk is root +
    ephemeral + swap, swap rounded up to whole GiB."""
    return common_pb2.Resources(
        vcpus=flavor.vcpus,
        memory_mb=flavor.memory_mb,
        disk_gb=flavor.root_gb + flavor.ephemeral_gb + math.ceil(flavor.swap_mb / 1024),
    )


# -- resource classes --------------------------------------------------------------------------


def resource_class_problem(name: str) -> str | None:
    """Why `name` is not a custom resource class as Placement names them, or None."""
    if len(name) > MAX_RESOURCE_CLASS:
        return f"must be at most {MAX_RESOURCE_CLASS} characters (got {len(name)})"
    if not RESOURCE_CLASS_PATTERN.match(name):
        return (
            f"{name[:64]!r} is not a custom resource class: CUSTOM_ followed by upper-case "
            "letters, digits and underscores (e.g. CUSTOM_BAREMETAL_GOLD)"
        )
    return None


def check_resource_class(field: str, name: str, *, required: bool = True) -> str:
    """`name` if it is a custom resource class (or empty and not `required`), else
    InvalidArgument naming `field`."""
    if not name and not required:
        return name
    problem = resource_class_problem(name)
    if problem:
        raise InvalidArgument.field(field, problem)
    return name


def requested_resource_class(
    extra_specs: Mapping[str, str], field: str = "flavor.extra_specs"
) -> str:
    """The custom resource class a flavor asks one whole node of (`resources:CUSTOM_X=1`),
    or '' when it asks for none. `resources:CUSTOM_X=0` asks for none (Nova's way to turn
    a class off); standard classes (`resources:VCPU=...`) are not a node's class and are
    left alone. InvalidArgument naming the key: a malformed class, an amount other than 0
    or 1 (a bare-metal node offers one unit of its class), or two classes at once."""
    wanted: list[str] = []
    for key, value in extra_specs.items():
        if not key.startswith(RESOURCES_PREFIX + "CUSTOM"):
            continue
        name = key.removeprefix(RESOURCES_PREFIX)
        check_resource_class(f"{field}[{key}]", name)
        amount = value.strip()
        if amount == "0":
            continue
        if amount != "1":
            raise InvalidArgument.field(
                f"{field}[{key}]",
                f"must be 1 (got {value[:32]!r}): a node of class {name} offers one unit, "
                "which one instance takes whole",
            )
        wanted.append(name)
    if len(wanted) > 1:
        raise InvalidArgument.field(
            field,
            f"asks for {len(wanted)} resource classes ({', '.join(sorted(wanted))}); a node "
            "offers one, so ask for one",
        )
    return wanted[0] if wanted else ""


def with_resource_class(extra_specs: Mapping[str, str], name: str) -> dict[str, str]:
    """`extra_specs` asking for one node of class `name` (checked) instead of any class
    they asked for before."""
    check_resource_class("resource_class", name)
    specs = {
        key: value
        for key, value in extra_specs.items()
        if not key.startswith(RESOURCES_PREFIX + "CUSTOM")
    }
    specs[RESOURCES_PREFIX + name] = "1"
    return specs
