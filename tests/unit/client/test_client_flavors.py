"""Nova's default flavors by name, explicit sizes, and what one instance of a flavor takes."""

from __future__ import annotations

import pytest
from berth.client import errors
from berth.client.flavors import (
    DEFAULT_FLAVORS,
    explicit_flavor,
    flavor,
    flavor_names,
    flavor_resources,
)
from berth.v1 import common_pb2
from berth.v1 import scheduler_pb2 as pb


@pytest.mark.parametrize(
    ("name", "sizes"),
    [
        ("m1.tiny", (1, 512, 1)),
        ("m1.small", (1, 2048, 20)),
        ("m1.medium", (2, 4096, 40)),
        ("m1.large", (4, 8192, 80)),
        ("m1.xlarge", (8, 16384, 160)),
    ],
)
def test_the_default_flavors_have_novas_sizes(name, sizes):
    got = flavor(name)

    assert (got.name, got.vcpus, got.memory_mb, got.root_gb) == (name, *sizes)
    assert (got.ephemeral_gb, got.swap_mb) == (0, 0)


def test_the_flavor_names_are_listed_smallest_first():
    assert flavor_names() == ["m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"]
    assert list(DEFAULT_FLAVORS) == flavor_names()


def test_an_unknown_flavor_is_invalid_and_the_error_names_the_known_ones():
    with pytest.raises(errors.InvalidArgument) as caught:
        flavor("m1.huge")

    assert caught.value.violations[0].field == "flavor"
    assert "'m1.huge'" in caught.value.message
    for name in flavor_names():
        assert name in caught.value.message


def test_an_explicit_flavor_has_no_name_and_the_sizes_given():
    got = explicit_flavor(3, 3072, 30, ephemeral_gb=5, swap_mb=512, extra_specs={"ssd": "true"})

    assert got == pb.Flavor(
        vcpus=3,
        memory_mb=3072,
        root_gb=30,
        ephemeral_gb=5,
        swap_mb=512,
        extra_specs={"ssd": "true"},
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        ((0, 512), {}, "vcpus"),
        ((1, 0), {}, "memory_mb"),
        ((1, 512, -1), {}, "root_gb"),
        ((1, 512), {"swap_mb": -1}, "swap_mb"),
    ],
)
def test_explicit_sizes_below_the_least_are_invalid_naming_the_field(args, kwargs, field):
    with pytest.raises(errors.InvalidArgument) as caught:
        explicit_flavor(*args, **kwargs)
    assert caught.value.violations[0].field == field


def test_an_instance_takes_root_plus_ephemeral_plus_swap_rounded_up_to_whole_gib():
    sized = explicit_flavor(2, 4096, 40, ephemeral_gb=10, swap_mb=1025)

    assert flavor_resources(sized) == common_pb2.Resources(vcpus=2, memory_mb=4096, disk_gb=52)
    assert flavor_resources(flavor("m1.tiny")) == common_pb2.Resources(
        vcpus=1, memory_mb=512, disk_gb=1
    )
