"""Instance sizes: Nova's default flavors by name, or explicit sizes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

from berth.client.errors import InvalidArgument
from berth.v1 import common_pb2
from berth.v1.scheduler_pb2 import Flavor

# Nova's default flavors: name -> (vcpus, memory_mb, root_gb).
DEFAULT_FLAVORS: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {
        "m1.tiny": (1, 512, 1),
        "m1.small": (1, 2048, 20),
        "m1.medium": (2, 4096, 40),
        "m1.large": (4, 8192, 80),
        "m1.xlarge": (8, 16384, 160),
    }
)


def flavor_names() -> list[str]:
    """The default flavors' names, smallest first."""
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
    return Flavor(name=name.strip(), vcpus=vcpus, memory_mb=memory_mb, root_gb=root_gb)


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
