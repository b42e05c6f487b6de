"""Nova's default flavors by name, explicit sizes, what one instance of a flavor takes, and
the resource class a flavor asks for."""

from __future__ import annotations

import pytest
from berth.client import errors
from berth.client.flavors import (
    DEFAULT_FLAVORS,
    check_resource_class,
    explicit_flavor,
    flavor,
    flavor_names,
    flavor_resources,
    requested_resource_class,
    with_resource_class,
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


def test_the_flavor_names_are_listed_smallest_first_then_baremetal():
    assert flavor_names() == [
        "m1.tiny",
        "m1.small",
        "m1.medium",
        "m1.large",
        "m1.xlarge",
        "baremetal",
    ]
    assert list(DEFAULT_FLAVORS) == flavor_names()


def test_the_baremetal_flavor_asks_for_one_custom_baremetal_node_and_vm_flavors_for_none():
    metal = flavor("baremetal")
    assert dict(metal.extra_specs) == {"resources:CUSTOM_BAREMETAL": "1"}
    assert requested_resource_class(metal.extra_specs) == "CUSTOM_BAREMETAL"
    # Nominal sizes, small enough for any fake-ironic server.
    assert (metal.vcpus, metal.memory_mb, metal.root_gb) == (1, 1024, 10)
    for name in flavor_names()[:-1]:
        assert not flavor(name).extra_specs, name


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


@pytest.mark.parametrize(
    ("specs", "wanted"),
    [
        pytest.param({}, "", id="no extra specs ask for no class"),
        pytest.param({"resources:CUSTOM_BAREMETAL_GOLD": "1"}, "CUSTOM_BAREMETAL_GOLD", id="one"),
        pytest.param(
            {"resources:CUSTOM_BAREMETAL_GOLD": " 1 "}, "CUSTOM_BAREMETAL_GOLD", id="spaces"
        ),
        pytest.param({"resources:CUSTOM_BAREMETAL": "0"}, "", id="zero turns a class off"),
        pytest.param(
            {"resources:VCPU": "0", "ssd": "true"}, "", id="standard classes are no class"
        ),
        pytest.param(
            {"resources:CUSTOM_A": "0", "resources:CUSTOM_B": "1", "resources:VCPU": "0"},
            "CUSTOM_B",
            id="the one asked among others turned off",
        ),
    ],
)
def test_the_class_a_flavor_asks_for(specs, wanted):
    assert requested_resource_class(specs) == wanted


@pytest.mark.parametrize(
    ("specs", "field", "says"),
    [
        pytest.param(
            {"resources:CUSTOM_gold": "1"},
            "flavor.extra_specs[resources:CUSTOM_gold]",
            "is not a custom resource class",
            id="lower case",
        ),
        pytest.param(
            {"resources:CUSTOM_": "1"},
            "flavor.extra_specs[resources:CUSTOM_]",
            "is not a custom resource class",
            id="nothing after CUSTOM_",
        ),
        pytest.param(
            {"resources:CUSTOM_GOLD": "2"},
            "flavor.extra_specs[resources:CUSTOM_GOLD]",
            "must be 1 (got '2')",
            id="more than one unit",
        ),
        pytest.param(
            {"resources:CUSTOM_GOLD": "one"},
            "flavor.extra_specs[resources:CUSTOM_GOLD]",
            "must be 1",
            id="not a number",
        ),
        pytest.param(
            {"resources:CUSTOM_GOLD": "1", "resources:CUSTOM_SILVER": "1"},
            "flavor.extra_specs",
            "asks for 2 resource classes (CUSTOM_GOLD, CUSTOM_SILVER)",
            id="two classes",
        ),
    ],
)
def test_a_malformed_class_request_is_invalid_naming_the_key(specs, field, says):
    with pytest.raises(errors.InvalidArgument) as caught:
        requested_resource_class(specs)
    (violation,) = caught.value.violations
    assert violation.field == field
    assert says in violation.description


@pytest.mark.parametrize(
    "name", ["CUSTOM_BAREMETAL", "CUSTOM_BAREMETAL_GOLD", "CUSTOM_9", "CUSTOM_" + "A" * 248]
)
def test_placements_custom_class_names_are_accepted(name):
    assert check_resource_class("resource_class", name) == name


@pytest.mark.parametrize(
    "name", ["", "BAREMETAL", "custom_baremetal", "CUSTOM_BARE-METAL", "CUSTOM_" + "A" * 249]
)
def test_other_class_names_are_refused(name):
    with pytest.raises(errors.InvalidArgument) as caught:
        check_resource_class("resource_class", name)
    assert caught.value.violations[0].field == "resource_class"


def test_an_empty_class_is_accepted_where_it_is_optional():
    assert check_resource_class("snapshot.resource_class", "", required=False) == ""


def test_asking_for_a_class_replaces_the_one_the_flavor_asked_for():
    specs = with_resource_class(flavor("baremetal").extra_specs, "CUSTOM_BAREMETAL_GOLD")
    assert specs == {"resources:CUSTOM_BAREMETAL_GOLD": "1"}
    assert with_resource_class({"ssd": "true"}, "CUSTOM_X") == {
        "ssd": "true",
        "resources:CUSTOM_X": "1",
    }
    with pytest.raises(errors.InvalidArgument):
        with_resource_class({}, "gold")
