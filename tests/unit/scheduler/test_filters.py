"""The scheduler's filters: each one's pass and reject cases, and building them from settings."""

from __future__ import annotations

from typing import Any

import pytest

from services.scheduler.filters import BUILT_IN, FILTERS, build_filters
from services.scheduler.filters.aggregate_instance_extra_specs import (
    AggregateInstanceExtraSpecsFilter,
)
from services.scheduler.filters.availability_zone import AvailabilityZoneFilter
from services.scheduler.filters.base import HostFilter
from services.scheduler.filters.compute import ComputeFilter
from services.scheduler.filters.core import CoreFilter
from services.scheduler.filters.different_host import DifferentHostFilter
from services.scheduler.filters.disk import DiskFilter
from services.scheduler.filters.extra_specs_ops import match
from services.scheduler.filters.image_properties import ImagePropertiesFilter
from services.scheduler.filters.io_ops import IoOpsFilter
from services.scheduler.filters.num_instances import NumInstancesFilter
from services.scheduler.filters.ram import RamFilter
from services.scheduler.filters.resource_class import ResourceClassFilter
from services.scheduler.filters.same_host import SameHostFilter
from services.scheduler.filters.scheduler_hints import SchedulerHintsFilter
from services.scheduler.filters.server_group_affinity import ServerGroupAffinityFilter
from services.scheduler.filters.server_group_anti_affinity import ServerGroupAntiAffinityFilter
from services.scheduler.hoststate import UNKNOWN_HOST
from services.scheduler.request import GroupPolicy, Request
from services.scheduler.settings import DEFAULT_FILTERS, SchedulerSettings

from .hosts import Node, R, make_bare_metal, make_host, make_request, make_settings
from .hosts import verdict as decide

SETTINGS = make_settings(max_io_ops_per_host=2, max_instances_per_host=3)
BUILT_IN_NAMES = [cls.name for cls in BUILT_IN]


def verdict(filter_cls: type[HostFilter], host: Node, request: Request, **fleet: Any) -> bool:
    return decide(filter_cls(SETTINGS), host, request, **fleet)


# --- ComputeFilter ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param(make_host(), True, id="an up and enabled service passes"),
        pytest.param(make_host(service_up=False), False, id="a down service is rejected"),
        pytest.param(
            make_host(service_disabled=True, disabled_reason="maintenance"),
            False,
            id="a disabled service is rejected",
        ),
        pytest.param(
            make_host(service_up=False, service_disabled=True),
            False,
            id="a down and disabled service is rejected",
        ),
        pytest.param(
            make_host(facts=UNKNOWN_HOST), False, id="a host the registry does not know is rejected"
        ),
    ],
)
def test_compute_filter(host: Node, expected: bool) -> None:
    assert verdict(ComputeFilter, host, make_request()) is expected


# --- RamFilter / CoreFilter / DiskFilter --------------------------------------------------


@pytest.mark.parametrize(
    ("host", "request_args", "expected"),
    [
        pytest.param(make_host(), {"memory_mb": 2048}, True, id="a flavor that fits passes"),
        pytest.param(
            make_host(used=R(0, 30720, 0)),
            {"memory_mb": 2048},
            True,
            id="a flavor asking exactly the free RAM passes",
        ),
        pytest.param(
            make_host(used=R(0, 30720, 0)),
            {"memory_mb": 2049},
            False,
            id="a flavor one MB over the free RAM is rejected",
        ),
        pytest.param(
            make_host(total=R(16, 4096, 1000), used=R(0, 4096, 0), ram_allocation_ratio=1.5),
            {"memory_mb": 2048},
            True,
            id="the RAM allocation ratio lets a full node take more",
        ),
        pytest.param(
            make_host(total=R(16, 4096, 1000), used=R(0, 4096, 0), ram_allocation_ratio=1.5),
            {"memory_mb": 2049},
            False,
            id="the RAM allocation ratio is still a limit",
        ),
        pytest.param(
            make_host(total=R(16, 2048, 1000), used=R(0, 512, 0), reserved_host_memory_mb=512),
            {"memory_mb": 1536},
            True,
            id="reserved memory counted in used is not subtracted twice",
        ),
        pytest.param(
            make_host(total=R(16, 2048, 1000), used=R(0, 512, 0), reserved_host_memory_mb=512),
            {"memory_mb": 1537},
            False,
            id="reserved memory leaves less room",
        ),
        pytest.param(
            make_host(total=R(16, 4096, 1000), claimed=R(1, 3072, 20), claim_count=1),
            {"memory_mb": 2048},
            False,
            id="a pending claim reduces free RAM",
        ),
        pytest.param(
            make_bare_metal(),
            {"memory_mb": 131072},
            True,
            id="an empty bare-metal node takes a flavor as large as the machine",
        ),
        pytest.param(
            make_bare_metal(),
            {"memory_mb": 131073},
            False,
            id="an empty bare-metal node rejects a flavor larger than the machine",
        ),
        pytest.param(
            make_bare_metal(ram_allocation_ratio=1.5),
            {"memory_mb": 131073},
            False,
            id="a bare-metal node ignores the RAM allocation ratio",
        ),
    ],
)
def test_ram_filter(host: Node, request_args: dict[str, Any], expected: bool) -> None:
    assert verdict(RamFilter, host, make_request(**request_args)) is expected


@pytest.mark.parametrize(
    ("host", "request_args", "expected"),
    [
        pytest.param(make_host(), {"vcpus": 16}, True, id="a flavor asking every core passes"),
        pytest.param(make_host(), {"vcpus": 17}, False, id="a flavor asking too many is rejected"),
        pytest.param(
            make_host(total=R(8, 32768, 1000), used=R(8, 0, 0), cpu_allocation_ratio=4.0),
            {"vcpus": 8},
            True,
            id="the CPU allocation ratio overcommits cores",
        ),
        pytest.param(
            make_host(total=R(8, 32768, 1000), cpu_allocation_ratio=4.0),
            {"vcpus": 9},
            False,
            id="one instance gets no more vCPUs than the node has cores (Placement's max_unit)",
        ),
        pytest.param(
            make_host(total=R(8, 32768, 1000), used=R(8, 0, 0), cpu_allocation_ratio=4.0),
            {"vcpus": 25},
            False,
            id="the CPU allocation ratio is still a limit",
        ),
        pytest.param(
            make_host(total=R(3, 32768, 1000), cpu_allocation_ratio=1.5),
            {"vcpus": 5},
            False,
            id="a fractional overcommit rounds the limit down",
        ),
        pytest.param(
            make_host(total=R(8, 32768, 1000), used=R(2, 0, 0), reserved_host_cpus=2),
            {"vcpus": 6},
            True,
            id="reserved cores counted in used are not subtracted twice",
        ),
        pytest.param(
            make_host(total=R(8, 32768, 1000), used=R(2, 0, 0), claimed=R(2, 0, 0), claim_count=2),
            {"vcpus": 5},
            False,
            id="pending claims reduce free cores",
        ),
        pytest.param(make_bare_metal(), {"vcpus": 32}, True, id="an empty bare-metal node passes"),
        pytest.param(
            make_bare_metal(cpu_allocation_ratio=16.0),
            {"vcpus": 33},
            False,
            id="a bare-metal node has no more cores than the machine",
        ),
    ],
)
def test_core_filter(host: Node, request_args: dict[str, Any], expected: bool) -> None:
    assert verdict(CoreFilter, host, make_request(**request_args)) is expected


@pytest.mark.parametrize(
    ("host", "request_args", "expected"),
    [
        pytest.param(
            make_host(total=R(16, 32768, 100)),
            {"root_gb": 100},
            True,
            id="a root disk as large as the free disk passes",
        ),
        pytest.param(
            make_host(total=R(16, 32768, 100)),
            {"root_gb": 60, "ephemeral_gb": 41},
            False,
            id="ephemeral disk counts with the root disk",
        ),
        pytest.param(
            make_host(total=R(16, 32768, 100)),
            {"root_gb": 99, "swap_mb": 1024},
            True,
            id="one GiB of swap fills the last GiB",
        ),
        pytest.param(
            make_host(total=R(16, 32768, 100)),
            {"root_gb": 99, "swap_mb": 1025},
            False,
            id="swap is rounded up to whole GiB",
        ),
        pytest.param(
            make_host(total=R(16, 32768, 100), disk_allocation_ratio=2.0, used=R(0, 0, 100)),
            {"root_gb": 100},
            True,
            id="the disk allocation ratio overcommits disk",
        ),
        pytest.param(
            make_host(total=R(16, 32768, 100), used=R(0, 0, 10), reserved_host_disk_mb=10240),
            {"root_gb": 91},
            False,
            id="reserved disk counted in used leaves less room",
        ),
        pytest.param(
            make_host(total=R(16, 32768, 100), claimed=R(1, 1024, 50), claim_count=1),
            {"root_gb": 51},
            False,
            id="a pending claim reduces free disk",
        ),
        pytest.param(
            make_bare_metal(), {"root_gb": 500}, True, id="an empty bare-metal node passes"
        ),
        pytest.param(
            make_bare_metal(),
            {"root_gb": 500, "swap_mb": 1},
            False,
            id="a bare-metal node rejects more disk than it has",
        ),
    ],
)
def test_disk_filter(host: Node, request_args: dict[str, Any], expected: bool) -> None:
    assert verdict(DiskFilter, host, make_request(**request_args)) is expected


# --- AvailabilityZoneFilter / ImagePropertiesFilter ---------------------------------------


@pytest.mark.parametrize(
    ("host", "zone", "expected"),
    [
        pytest.param(make_host(availability_zone="az1"), "az1", True, id="the requested zone"),
        pytest.param(
            make_host(availability_zone="az2"), "az1", False, id="another zone is rejected"
        ),
        pytest.param(
            make_host(availability_zone=""), "az1", False, id="a host without a zone is rejected"
        ),
        pytest.param(
            make_host(availability_zone="AZ1"), "az1", False, id="zone names are case-sensitive"
        ),
    ],
)
def test_availability_zone_filter(host: Node, zone: str, expected: bool) -> None:
    assert verdict(AvailabilityZoneFilter, host, make_request(availability_zone=zone)) is expected


@pytest.mark.parametrize(
    ("host", "hypervisor_type", "expected"),
    [
        pytest.param(make_host(hypervisor_type="QEMU"), "QEMU", True, id="the same type passes"),
        pytest.param(make_host(hypervisor_type="QEMU"), "qemu", True, id="the type ignores case"),
        pytest.param(
            make_host(hypervisor_type="QEMU"), "ironic", False, id="another type is rejected"
        ),
        pytest.param(
            make_host(hypervisor_type=""), "qemu", False, id="a node of unknown type is rejected"
        ),
    ],
)
def test_image_properties_filter(host: Node, hypervisor_type: str, expected: bool) -> None:
    request = make_request(hypervisor_type=hypervisor_type)
    assert verdict(ImagePropertiesFilter, host, request) is expected


# --- Hints and server groups --------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_cls", "request_args"),
    [
        pytest.param(AvailabilityZoneFilter, {}, id="no zone skips the zone filter"),
        pytest.param(ImagePropertiesFilter, {}, id="no hypervisor type skips the image filter"),
        pytest.param(SameHostFilter, {}, id="no same_host hint skips SameHostFilter"),
        pytest.param(DifferentHostFilter, {}, id="no different_host hint skips DifferentHost"),
        pytest.param(ServerGroupAffinityFilter, {}, id="no group skips the affinity filter"),
        pytest.param(
            ServerGroupAffinityFilter,
            {"group": "g", "group_policy": GroupPolicy.ANTI_AFFINITY},
            id="an anti-affinity group skips the affinity filter",
        ),
        pytest.param(ServerGroupAntiAffinityFilter, {}, id="no group skips anti-affinity"),
        pytest.param(
            ServerGroupAntiAffinityFilter,
            {"group": "g", "group_policy": GroupPolicy.AFFINITY},
            id="an affinity group skips the anti-affinity filter",
        ),
        pytest.param(
            AggregateInstanceExtraSpecsFilter, {}, id="a flavor without extra specs skips it"
        ),
        pytest.param(
            AggregateInstanceExtraSpecsFilter,
            {"extra_specs": {"hw:cpu_policy": "dedicated", "capabilities:hypervisor_type": "x"}},
            id="a flavor with only other scopes' extra specs skips it",
        ),
    ],
)
def test_a_filter_not_asked_for_does_not_apply(
    filter_cls: type[HostFilter], request_args: dict[str, Any]
) -> None:
    assert filter_cls(SETTINGS).applies(make_request(**request_args)) is False


@pytest.mark.parametrize(
    "filter_cls",
    [
        pytest.param(ComputeFilter, id="ComputeFilter always applies"),
        pytest.param(RamFilter, id="RamFilter always applies"),
        pytest.param(CoreFilter, id="CoreFilter always applies"),
        pytest.param(DiskFilter, id="DiskFilter always applies"),
        pytest.param(NumInstancesFilter, id="NumInstancesFilter always applies"),
        pytest.param(IoOpsFilter, id="IoOpsFilter always applies"),
    ],
)
def test_a_resource_filter_always_applies(filter_cls: type[HostFilter]) -> None:
    assert filter_cls(SETTINGS).applies(make_request()) is True


HINTED = {"same_host": frozenset({"instance-a"}), "different_host": frozenset({"instance-a"})}


def holding_instance_a(*hosts: str) -> list[Node]:
    """Nodes of these hosts that report instance-a (one host reports it, the rest claim
    it: both count)."""
    nodes = []
    for index, host in enumerate(hosts):
        if index == 0:
            nodes.append(make_host(host=host, instance_uuids=frozenset({"instance-a"})))
        else:
            node = make_host(host=host, claimed=R(1, 512, 1))
            claim = node.claims[0]
            moved = type(claim)(
                claim.claim_id, claim.node_uuid, "instance-a", claim.resources, claim.expires_ms
            )
            nodes.append(Node(node.state, node.facts, (moved,)))
    return nodes


@pytest.mark.parametrize(
    ("filter_cls", "host", "holding", "expected"),
    [
        pytest.param(
            SameHostFilter,
            make_host(host="h1", instance_uuids=frozenset({"instance-a"})),
            (),
            True,
            id="a host holding a hinted instance passes same_host",
        ),
        pytest.param(
            SameHostFilter,
            make_host(host="h3"),
            ("h1", "h2"),
            False,
            id="a host without the hinted instances is rejected by same_host",
        ),
        pytest.param(
            SameHostFilter,
            make_host(host="h1"),
            (),
            False,
            id="when the hinted instances are nowhere nothing passes same_host",
        ),
        pytest.param(
            DifferentHostFilter,
            make_host(host="h1", instance_uuids=frozenset({"instance-a"})),
            (),
            False,
            id="a host holding a hinted instance is rejected by different_host",
        ),
        pytest.param(
            DifferentHostFilter,
            make_host(host="h2"),
            ("h1",),
            True,
            id="another host passes different_host",
        ),
        pytest.param(
            DifferentHostFilter,
            make_host(host="h2"),
            ("h3", "h2x"),
            True,
            id="a claimed hinted instance counts where it is claimed only",
        ),
        pytest.param(
            DifferentHostFilter,
            make_host(host="h1"),
            (),
            True,
            id="when the hinted instances are nowhere every host passes different_host",
        ),
    ],
)
def test_same_and_different_host(
    filter_cls: type[HostFilter], host: Node, holding: tuple[str, ...], expected: bool
) -> None:
    others = holding_instance_a(*holding)
    assert verdict(filter_cls, host, make_request(**HINTED), others=others) is expected


@pytest.mark.parametrize(
    ("filter_cls", "policy", "host", "group_hosts", "expected"),
    [
        pytest.param(
            ServerGroupAffinityFilter,
            GroupPolicy.AFFINITY,
            make_host(host="h1"),
            set(),
            True,
            id="the first member of an affinity group goes anywhere",
        ),
        pytest.param(
            ServerGroupAffinityFilter,
            GroupPolicy.AFFINITY,
            make_host(host="h1"),
            {"h1"},
            True,
            id="an affinity member joins the group's host",
        ),
        pytest.param(
            ServerGroupAffinityFilter,
            GroupPolicy.AFFINITY,
            make_host(host="h2"),
            {"h1"},
            False,
            id="an affinity member is kept off other hosts",
        ),
        pytest.param(
            ServerGroupAntiAffinityFilter,
            GroupPolicy.ANTI_AFFINITY,
            make_host(host="h1"),
            set(),
            True,
            id="the first member of an anti-affinity group goes anywhere",
        ),
        pytest.param(
            ServerGroupAntiAffinityFilter,
            GroupPolicy.ANTI_AFFINITY,
            make_host(host="h2"),
            {"h1"},
            True,
            id="an anti-affinity member goes to a host without members",
        ),
        pytest.param(
            ServerGroupAntiAffinityFilter,
            GroupPolicy.ANTI_AFFINITY,
            make_host(host="h1"),
            {"h1", "h3"},
            False,
            id="an anti-affinity member is kept off a host with a member",
        ),
    ],
)
def test_server_groups(
    filter_cls: type[HostFilter],
    policy: GroupPolicy,
    host: Node,
    group_hosts: set[str],
    expected: bool,
) -> None:
    request = make_request(group="group-1", group_policy=policy)
    assert verdict(filter_cls, host, request, group_hosts=group_hosts) is expected


# --- NumInstancesFilter / IoOpsFilter (limits 3 and 2 in SETTINGS) -------------------------


@pytest.mark.parametrize(
    ("filter_cls", "host", "expected"),
    [
        pytest.param(
            NumInstancesFilter, make_host(num_instances=2), True, id="a node under the cap passes"
        ),
        pytest.param(
            NumInstancesFilter,
            make_host(num_instances=3),
            False,
            id="a node at max_instances_per_host is rejected",
        ),
        pytest.param(
            NumInstancesFilter,
            make_host(num_instances=2, claim_count=1, claimed=R(1, 2048, 20)),
            False,
            id="pending claims count toward max_instances_per_host",
        ),
        pytest.param(IoOpsFilter, make_host(io_ops=1), True, id="a node under the I/O cap passes"),
        pytest.param(
            IoOpsFilter, make_host(io_ops=2), False, id="a node at max_io_ops_per_host is rejected"
        ),
    ],
)
def test_count_limits(filter_cls: type[HostFilter], host: Node, expected: bool) -> None:
    assert verdict(filter_cls, host, make_request()) is expected


# --- AggregateInstanceExtraSpecsFilter -----------------------------------------------------


@pytest.mark.parametrize(
    ("host_value", "requirement", "expected"),
    [
        pytest.param("true", "true", True, id="a plain value matches itself"),
        pytest.param("false", "true", False, id="a plain value rejects another"),
        pytest.param("fast disk", "fast disk", True, id="an unknown first word means equality"),
        pytest.param("8", "= 4", True, id="= 4 is satisfied by more"),
        pytest.param("4", "= 4", True, id="= 4 is satisfied by exactly 4"),
        pytest.param("3", "= 4", False, id="= 4 is not satisfied by less"),
        pytest.param("4.0", "== 4", True, id="== compares numbers, not strings"),
        pytest.param("5", "== 4", False, id="== rejects another number"),
        pytest.param("5", "!= 4", True, id="!= accepts another number"),
        pytest.param("4", "!= 4", False, id="!= rejects the same number"),
        pytest.param("10", ">= 9", True, id=">= compares numerically, not as strings"),
        pytest.param("8", ">= 9", False, id=">= rejects less"),
        pytest.param("8", "<= 9", True, id="<= accepts less"),
        pytest.param("10", "<= 9", False, id="<= rejects more"),
        pytest.param("many", ">= 4", False, id="a numeric operator rejects a non-number"),
        pytest.param("4.0", "s== 4", False, id="s== compares strings"),
        pytest.param("abc", "s== abc", True, id="s== accepts the same string"),
        pytest.param("abd", "s!= abc", True, id="s!= accepts another string"),
        pytest.param("10", "s< 9", True, id="s< compares strings, so 10 sorts before 9"),
        pytest.param("b", "s> a", True, id="s> accepts a later string"),
        pytest.param("a", "s>= b", False, id="s>= rejects an earlier string"),
        pytest.param("b", "s<= b", True, id="s<= accepts the same string"),
        pytest.param("nvidia-a100", "<in> a100", True, id="<in> finds a substring"),
        pytest.param("nvidia-t4", "<in> a100", False, id="<in> rejects a missing substring"),
        pytest.param("avx,avx2,sse", "<all-in> avx2 sse", True, id="<all-in> wants every word"),
        pytest.param("avx,sse", "<all-in> avx2 sse", False, id="<all-in> rejects a missing word"),
        pytest.param("silver", "<or> gold <or> silver", True, id="<or> accepts any choice"),
        pytest.param("gold", "<or> gold <or> silver", True, id="<or> accepts the first choice"),
        pytest.param("bronze", "<or> gold <or> silver", False, id="<or> rejects other values"),
        pytest.param("<or>", "<or> gold <or> silver", False, id="<or> keywords are not choices"),
        pytest.param("4", ">=", False, id="an operator without an operand matches nothing"),
        pytest.param("x", "<or>", False, id="<or> without choices matches nothing"),
    ],
)
def test_extra_specs_operators(host_value: str, requirement: str, expected: bool) -> None:
    assert match(host_value, requirement) is expected


@pytest.mark.parametrize(
    ("metadata", "extra_specs", "expected"),
    [
        pytest.param(
            {"ssd": frozenset({"true"})},
            {"ssd": "true"},
            True,
            id="an unscoped spec matching the aggregate passes",
        ),
        pytest.param(
            {"ssd": frozenset({"false"})},
            {"ssd": "true"},
            False,
            id="an unscoped spec not matching the aggregate is rejected",
        ),
        pytest.param(
            {}, {"ssd": "true"}, False, id="a spec the host's aggregates do not set is rejected"
        ),
        pytest.param(
            {"ssd": frozenset({"true"})},
            {"aggregate_instance_extra_specs:ssd": "true"},
            True,
            id="the filter's own scope is stripped before matching",
        ),
        pytest.param(
            {"ssd": frozenset({"false"})},
            {"aggregate_instance_extra_specs:ssd": "true"},
            False,
            id="a scoped spec is checked like an unscoped one",
        ),
        pytest.param(
            {"ssd": frozenset({"true"})},
            {"ssd": "true", "hw:cpu_policy": "dedicated", "capabilities:cpu_info:arch": "x86"},
            True,
            id="specs of other scopes are ignored",
        ),
        pytest.param(
            {"ssd": frozenset({"false", "true"})},
            {"ssd": "true"},
            True,
            id="one of several aggregate values matching is enough",
        ),
        pytest.param(
            {"ssd": frozenset({"true"}), "gpus": frozenset({"2"})},
            {"ssd": "true", "gpus": "= 4"},
            False,
            id="every spec must match",
        ),
        pytest.param(
            {"ssd": frozenset({"true"}), "gpus": frozenset({"8"})},
            {"ssd": "true", "aggregate_instance_extra_specs:gpus": "= 4"},
            True,
            id="operators work in aggregate specs",
        ),
    ],
)
def test_aggregate_instance_extra_specs_filter(
    metadata: dict[str, frozenset[str]], extra_specs: dict[str, str], expected: bool
) -> None:
    host = make_host(aggregate_metadata=metadata)
    request = make_request(extra_specs=extra_specs)
    assert verdict(AggregateInstanceExtraSpecsFilter, host, request) is expected


def test_extra_specs_filter_follows_the_flavor_of_each_request() -> None:
    # One filter instance serves every request; it must not keep judging by the first flavor.
    host_filter = AggregateInstanceExtraSpecsFilter(SETTINGS)
    host = make_host(aggregate_metadata={"ssd": frozenset({"true"})})
    wants_ssd = make_request(extra_specs={"ssd": "true"})
    wants_hdd = make_request(extra_specs={"ssd": "false"})
    assert decide(host_filter, host, wants_ssd) is True
    assert decide(host_filter, host, wants_hdd) is False
    assert decide(host_filter, host, wants_ssd) is True


# --- Building filters from settings -------------------------------------------------------


def test_every_default_filter_is_known_under_its_nova_name() -> None:
    assert set(FILTERS) == set(DEFAULT_FILTERS)
    for name, cls in FILTERS.items():
        assert cls.name == name


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(DEFAULT_FILTERS, id="the default filters are built in their order"),
        pytest.param(
            ("DiskFilter", "ComputeFilter", "RamFilter"),
            id="a configured order is kept",
        ),
        pytest.param((), id="no enabled filters build none"),
    ],
)
def test_build_filters_keeps_the_configured_order(names: tuple[str, ...]) -> None:
    settings = make_settings(enabled_filters=names)
    built = build_filters(settings)
    assert [f.name for f in built] == [*BUILT_IN_NAMES, *names]
    assert all(f.settings is settings for f in built)


def test_build_filters_parses_a_comma_separated_setting() -> None:
    settings = make_settings(enabled_filters="ComputeFilter, IoOpsFilter")
    built = [type(f) for f in build_filters(settings)]
    assert built == [SchedulerHintsFilter, ResourceClassFilter, ComputeFilter, IoOpsFilter]


def test_the_environment_gives_filters_comma_separated_as_the_readme_says(monkeypatch) -> None:
    # Not JSON: pydantic-settings would otherwise parse the list as JSON and stop the start
    # with a traceback.
    monkeypatch.setenv("BERTH_ENABLED_FILTERS", "ComputeFilter,IoOpsFilter")
    assert SchedulerSettings().enabled_filters == ("ComputeFilter", "IoOpsFilter")


def test_an_unknown_filter_name_is_refused_with_the_known_names() -> None:
    settings = make_settings(enabled_filters=("ComputeFilter", "RetryFilter"))
    known = ", ".join(sorted(FILTERS))
    with pytest.raises(ValueError) as raised:
        build_filters(settings)
    assert str(raised.value) == f"unknown filter 'RetryFilter'; known: {known}"
    assert known.startswith("AggregateInstanceExtraSpecsFilter, AvailabilityZoneFilter, ")


# --- ResourceClassFilter (built in) --------------------------------------------------------

GOLD = {"extra_specs": {"resources:CUSTOM_BAREMETAL_GOLD": "1"}}


@pytest.mark.parametrize(
    ("host", "request_args", "expected"),
    [
        pytest.param(make_host(), {}, True, id="a VM flavor on a host of VMs passes"),
        pytest.param(
            make_bare_metal(), {}, False, id="a VM flavor never lands on a bare-metal node"
        ),
        pytest.param(
            make_bare_metal(resource_class="CUSTOM_BAREMETAL_GOLD"),
            GOLD,
            True,
            id="a flavor asking a class lands on a free node of that class",
        ),
        pytest.param(
            make_bare_metal(resource_class="CUSTOM_BAREMETAL_SILVER"),
            GOLD,
            False,
            id="a node of another class is rejected",
        ),
        pytest.param(
            make_host(resource_class="CUSTOM_BAREMETAL_GOLD"),
            GOLD,
            False,
            id="a node that is not taken whole is rejected for a class request",
        ),
        pytest.param(make_host(), GOLD, False, id="a host of VMs is rejected for a class"),
        pytest.param(
            make_bare_metal(resource_class="CUSTOM_BAREMETAL_GOLD", num_instances=1),
            GOLD,
            False,
            id="a bare-metal node holding an instance is taken",
        ),
        pytest.param(
            make_bare_metal(resource_class="CUSTOM_BAREMETAL_GOLD", claimed=R(1, 1, 1)),
            GOLD,
            False,
            id="a bare-metal node with a pending claim is taken however small the claim",
        ),
        pytest.param(
            make_bare_metal(resource_class="CUSTOM_BAREMETAL_GOLD"),
            {"extra_specs": {"resources:CUSTOM_NOWHERE": "1"}},
            False,
            id="a class no node offers matches nothing",
        ),
    ],
)
def test_resource_class_filter(host: Node, request_args: dict[str, Any], expected: bool) -> None:
    assert verdict(ResourceClassFilter, host, make_request(**request_args)) is expected
