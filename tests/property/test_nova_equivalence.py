"""The vectorised filters and weighers against Nova's rules read one node at a time
(`nova_reference`): on random fleets, including the boundaries (exactly full, ratios below
1, reserved larger than what is free, bare metal taken), the masks, the per-filter counts,
the weights and the full order are the same."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scheduler.context import PlacementContext
from services.scheduler.filters import build_filters
from services.scheduler.filters.runner import FilterRun
from services.scheduler.hoststate import HostFacts, HostState, Resources
from services.scheduler.request import Flavor, Request
from services.scheduler.settings import SchedulerSettings
from services.scheduler.weighers import Weighing, build_weighers
from tests.property import nova_reference as nova
from tests.unit.scheduler.hosts import Node, fleet, make_host

SETTINGS = SchedulerSettings(max_instances_per_host=6, max_io_ops_per_host=4)
CLASSES = ("", "CUSTOM_BAREMETAL", "CUSTOM_BAREMETAL_GOLD")


@st.composite
def nodes(draw, index: int) -> Node:
    whole = draw(st.booleans()) and draw(st.booleans())  # a quarter bare metal
    total = Resources(
        draw(st.integers(1, 64)), draw(st.integers(512, 65536)), draw(st.integers(0, 2000))
    )
    if whole:
        taken = draw(st.booleans())
        used = total if taken else Resources()
        extra = {
            "whole_machine": True,
            "resource_class": draw(st.sampled_from(CLASSES[1:])),
            "hypervisor_type": "ironic",
            "num_instances": 1 if taken else 0,
        }
    else:
        reserved = (
            draw(st.integers(0, 8)),
            draw(st.integers(0, 4096)),
            draw(st.integers(0, 200_000)),
        )
        share = draw(st.sampled_from([0.0, 0.5, 1.0, 1.2, draw(st.floats(0, 1.5))]))
        used = Resources(
            reserved[0] + int(total.vcpus * share),
            reserved[1] + int(total.memory_mb * share),
            -(-reserved[2] // 1024) + int(total.disk_gb * share),
        )
        extra = {
            "reserved_host_cpus": reserved[0],
            "reserved_host_memory_mb": reserved[1],
            "reserved_host_disk_mb": reserved[2],
            "cpu_allocation_ratio": draw(st.sampled_from([0.5, 0.9, 1.0, 1.3, 4.0, 16.0])),
            "ram_allocation_ratio": draw(st.sampled_from([0.5, 0.9, 1.0, 1.5])),
            "disk_allocation_ratio": draw(st.sampled_from([0.8, 1.0, 2.0])),
            "num_instances": draw(st.integers(0, 8)),
            "hypervisor_type": draw(st.sampled_from(["QEMU", "VMware vCenter Server"])),
        }
    claims = draw(st.integers(0, 3))
    claimed = Resources(
        draw(st.integers(0, 8)) * claims, draw(st.integers(0, 4096)) * claims, claims * 10
    )
    return make_host(
        host=f"h{index}",
        total=total,
        used=used,
        io_ops=draw(st.integers(0, 5)),
        claimed=claimed,
        claim_count=claims,
        service_up=draw(st.booleans()) or draw(st.booleans()),
        service_disabled=not (draw(st.booleans()) or draw(st.booleans())),
        availability_zone=draw(st.sampled_from(["az1", "az2", ""])),
        **extra,
    )


@st.composite
def fleets(draw) -> list[Node]:
    size = draw(st.integers(1, 30))
    return [draw(nodes(i)) for i in range(size)]


@st.composite
def requests(draw) -> Request:
    resource_class = draw(st.sampled_from(CLASSES))
    specs = {f"resources:{resource_class}": "1"} if resource_class else {}
    flavor = Flavor(
        "",
        draw(st.integers(1, 70)),
        draw(st.integers(1, 70000)),
        draw(st.integers(0, 2100)),
        extra_specs=specs,
    )
    return Request(
        flavor,
        1,
        ("i",),
        availability_zone=draw(st.sampled_from(["", "az1"])),
        hypervisor_type=draw(st.sampled_from(["", "qemu"])),
    )


def reference_nodes(nodes_: list[Node]) -> list[nova.RefNode]:
    return [
        nova.RefNode(
            n.state,
            n.facts,
            sum((c.resources for c in n.claims), Resources()),
            len(n.claims),
        )
        for n in nodes_
    ]


@settings(max_examples=300, deadline=None)
@given(fleet_=fleets(), request=requests())
def test_filters_agree_with_novas_rules_node_by_node(fleet_: list[Node], request: Request):
    mirror = fleet(fleet_)
    run = FilterRun(build_filters(SETTINGS), request, PlacementContext(mirror))
    removed, passed = run.rejections(mirror.view())
    expected: dict[str, int] = {}
    for node, ref in zip(fleet_, reference_nodes(fleet_), strict=True):
        rejection = nova.first_rejection(ref, request, SETTINGS)
        row = mirror.row_of[node.state.node_uuid]
        assert bool(passed[row]) == (rejection is None), (node, rejection)
        if rejection:
            expected[rejection] = expected.get(rejection, 0) + 1
    assert removed == expected


SPREAD = SchedulerSettings()
PACK = SchedulerSettings(**nova.PACK_MULTIPLIERS, num_instances_weight_multiplier=0.5)


@settings(max_examples=300, deadline=None)
@given(fleet_=fleets(), config=st.sampled_from([SPREAD, PACK]))
def test_weights_and_order_are_novas_to_the_bit(fleet_: list[Node], config: SchedulerSettings):
    mirror = fleet(fleet_)
    rows = np.array([mirror.row_of[n.state.node_uuid] for n in fleet_], np.intp)
    weighed = Weighing(build_weighers(config), mirror).weigh(rows).tolist()
    reference = reference_nodes(fleet_)
    multipliers = nova.multipliers_of(config)
    assert weighed == nova.weights(reference, multipliers)
    order = sorted(range(len(weighed)), key=lambda i: weighed[i], reverse=True)
    assert order == nova.ranking(reference, multipliers)
    if weighed:
        assert int(np.argmax(weighed)) == nova.ranking(reference, multipliers)[0]


def test_a_report_or_claim_updates_only_its_rows_weights():
    # The cached raw values follow the mirror: after a claim, a new report and a deletion
    # the weights equal a fresh computation.
    nodes_ = [make_host(host=f"h{i}", used=Resources(i, 1000 * i, 10 * i)) for i in range(8)]
    mirror = fleet(nodes_)
    weighing = Weighing(build_weighers(SPREAD), mirror)
    rows = np.arange(8)
    weighing.weigh(rows)
    mirror.put_node(
        HostState(nodes_[3].state.node_uuid, "h3", "h3-node", 2, total=Resources(16, 32768, 1000)),
        [],
    )
    mirror.set_facts(HostFacts("h4", service_up=True))
    mirror.drop_node(nodes_[7].state.node_uuid)
    rows = np.arange(7)
    assert (
        weighing.weigh(rows).tolist()
        == Weighing(build_weighers(SPREAD), mirror).weigh(rows).tolist()
    )
