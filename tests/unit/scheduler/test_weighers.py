"""The scheduler's weighers: raw weights, Nova's normalisation, multipliers and their sum."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest

from services.scheduler.columns import FloatArray, View
from services.scheduler.weighers import MULTIPLIER_SETTINGS, WEIGHERS, Weighing, build_weighers
from services.scheduler.weighers.base import Weigher
from services.scheduler.weighers.cpu import CPUWeigher
from services.scheduler.weighers.disk import DiskWeigher
from services.scheduler.weighers.io_ops import IoOpsWeigher
from services.scheduler.weighers.num_instances import NumInstancesWeigher
from services.scheduler.weighers.ram import RAMWeigher

from .hosts import Node, R, fleet, make_bare_metal, make_host, make_settings

# A busy overcommitted node: 16 cores x 4.0, 32 GiB x 1.5, 1000 GiB x 1.0, with usage and
# two pending claims.
BUSY = make_host(
    total=R(16, 32768, 1000),
    used=R(10, 8192, 300),
    claimed=R(2, 4096, 40),
    claim_count=2,
    num_instances=5,
    io_ops=3,
    cpu_allocation_ratio=4.0,
    ram_allocation_ratio=1.5,
)


def raw(weigher_cls: type[Weigher], host: Node) -> float:
    mirror = fleet([host])
    return float(weigher_cls(1.0).raw(mirror.view(np.array([0])))[0])


def weigh_all(hosts: Sequence[Node], weighers: Sequence[Weigher]) -> list[float]:
    """The final weights of these nodes, in their order, as the selector weighs them."""
    mirror = fleet(hosts)
    rows = np.array([mirror.row_of[h.state.node_uuid] for h in hosts], np.intp)
    return Weighing(weighers, mirror).weigh(rows).tolist()


@pytest.mark.parametrize(
    ("weigher_cls", "host", "expected"),
    [
        pytest.param(
            RAMWeigher, BUSY, 32768 - 8192 - 4096, id="RAM weighs free RAM, without the ratio"
        ),
        pytest.param(CPUWeigher, BUSY, 64 - (10 + 2), id="CPU weighs free vCPUs, with the ratio"),
        pytest.param(DiskWeigher, BUSY, 1000 - 300 - 40, id="disk weighs free disk"),
        pytest.param(IoOpsWeigher, BUSY, 3, id="I/O ops weighs the node's I/O operations"),
        pytest.param(
            NumInstancesWeigher, BUSY, 5 + 2, id="instances weighs instances plus pending claims"
        ),
        pytest.param(
            RAMWeigher, make_bare_metal(), 131072, id="an empty bare-metal node has all RAM free"
        ),
        pytest.param(
            RAMWeigher,
            make_bare_metal(num_instances=1, used=R(32, 131072, 500)),
            0,
            id="a taken bare-metal node has none",
        ),
        pytest.param(
            CPUWeigher,
            make_host(total=R(4, 1024, 10), used=R(6, 0, 0), cpu_allocation_ratio=1.0),
            -2,
            id="an overcommitted node weighs negative before clipping",
        ),
    ],
)
def test_raw_weights(weigher_cls: type[Weigher], host: Node, expected: float) -> None:
    assert raw(weigher_cls, host) == expected


def test_a_fractional_cpu_ratio_is_weighed_as_nova_computes_it() -> None:
    host = make_host(total=R(7, 3000, 77), cpu_allocation_ratio=1.3, used=R(1, 100, 10))
    assert raw(CPUWeigher, host) == 7 * 1.3 - (1 + 0)


def test_bounds_are_novas() -> None:
    bounds = {name: (cls.minval, cls.maxval) for name, cls in WEIGHERS.items()}
    assert bounds == {
        "RAMWeigher": (0.0, None),
        "CPUWeigher": (0.0, None),
        "DiskWeigher": (0.0, None),
        "IoOpsWeigher": (0.0, None),
        "NumInstancesWeigher": (None, None),
    }


class Given(Weigher):
    """Weighs each node by its io_ops - 100, so a test can give any value (even negative)."""

    name: ClassVar[str] = "Given"

    def raw(self, view: View) -> FloatArray:
        return view.io_ops.astype(np.float64) - 100


def normalize(values: list[int], minval: float | None, maxval: float | None) -> list[float]:
    weigher = Given(1.0)
    weigher.minval, weigher.maxval = minval, maxval  # type: ignore[misc]
    hosts = [make_host(host=f"h{i}", io_ops=v + 100) for i, v in enumerate(values)]
    return weigh_all(hosts, [weigher]) if len(values) > 1 else [0.0] * len(values)


@pytest.mark.parametrize(
    ("values", "minval", "maxval", "expected"),
    [
        pytest.param([1, 2, 3], None, None, [0.0, 0.5, 1.0], id="the list's own range"),
        pytest.param([3, 1, 2], None, None, [1.0, 0.0, 0.5], id="order is kept"),
        pytest.param([5, 5, 5], None, None, [0.0, 0.0, 0.0], id="all equal values weigh 0"),
        pytest.param([10, 20, 40], 0, None, [0.25, 0.5, 1.0], id="minval replaces the minimum"),
        pytest.param([0, 5, 10], None, 20, [0.0, 0.25, 0.5], id="maxval replaces the maximum"),
        pytest.param([-10, 10, 20], 0, None, [0.0, 0.5, 1.0], id="values below minval clip"),
        pytest.param([0, 5, 20], None, 10, [0.0, 0.5, 1.0], id="values above maxval clip"),
        pytest.param([50, 150], 0, 100, [0.5, 1.0], id="both bounds set the range"),
        pytest.param([-3, -1], 0, None, [0.0, 0.0], id="all clipped to minval weigh 0"),
        pytest.param([0, 0], 0, None, [0.0, 0.0], id="all at minval weigh 0"),
    ],
)
def test_normalize(
    values: list[int], minval: float | None, maxval: float | None, expected: list[float]
) -> None:
    assert normalize(values, minval, maxval) == pytest.approx(expected)


def ram_hosts(*free_mb: int) -> list[Node]:
    return [
        make_host(host=f"h{i}", total=R(16, 8192, 1000), used=R(0, 8192 - free, 0))
        for i, free in enumerate(free_mb)
    ]


@pytest.mark.parametrize(
    ("multiplier", "expected", "winner"),
    [
        pytest.param(1.0, [0.25, 0.75, 1.0], 2, id="a positive multiplier spreads: most free wins"),
        pytest.param(
            -1.0, [-0.25, -0.75, -1.0], 0, id="a negative multiplier packs: the fullest wins"
        ),
        pytest.param(2.5, [0.625, 1.875, 2.5], 2, id="the multiplier scales the weight"),
    ],
)
def test_one_weigher(multiplier: float, expected: list[float], winner: int) -> None:
    weights = weigh_all(ram_hosts(1000, 3000, 4000), [RAMWeigher(multiplier)])
    assert weights == pytest.approx(expected)
    assert weights.index(max(weights)) == winner


def test_two_weighers_add_up() -> None:
    # RAM (minval 0): 4000 -> 1.0, 2000 -> 0.5. I/O (minval 0): 4 -> 1.0, 0 -> 0.0.
    # Busy roomy node: 1.0 x 1.0 + -1.0 x 1.0 = 0.0; idle smaller node: 0.5 + 0 = 0.5.
    busy = make_host(host="busy", total=R(16, 4000, 1000), io_ops=4)
    idle = make_host(host="idle", total=R(16, 4000, 1000), used=R(0, 2000, 0))
    weighers = [RAMWeigher(1.0), IoOpsWeigher(-1.0)]
    assert weigh_all([busy, idle], weighers) == pytest.approx([0.0, 0.5])


def test_instances_normalise_between_the_emptiest_and_the_fullest() -> None:
    # No minval: 2, 4, 6 instances -> 0, 0.5, 1; multiplier -1 prefers the emptiest.
    hosts = [make_host(host=f"h{n}", num_instances=n) for n in (2, 4, 6)]
    weights = weigh_all(hosts, [NumInstancesWeigher(-1.0)])
    assert weights == pytest.approx([0.0, -0.5, -1.0])


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        pytest.param([], [], id="no nodes weigh nothing"),
        pytest.param(ram_hosts(4000), [0.0], id="a single node is not weighed"),
        # minval 0: equal free RAM still weighs 4000 / 4000 = 1 on each node, a tie.
        pytest.param(ram_hosts(4000, 4000), [1.0, 1.0], id="identical nodes tie"),
    ],
)
def test_degenerate_weighing(hosts: list[Node], expected: list[float]) -> None:
    assert weigh_all(hosts, [RAMWeigher(1.0), IoOpsWeigher(-1.0)]) == expected


def test_equal_counts_without_minval_weigh_zero() -> None:
    hosts = [make_host(host=f"h{i}", num_instances=3) for i in range(3)]
    assert weigh_all(hosts, [NumInstancesWeigher(5.0)]) == [0.0, 0.0, 0.0]


def test_no_weighers_weigh_every_node_zero() -> None:
    assert weigh_all(ram_hosts(1000, 2000), []) == [0.0, 0.0]


def test_build_weighers_uses_novas_defaults() -> None:
    # Pass Nova's defaults explicitly so BERTH_* variables in the environment do not matter.
    settings = make_settings(
        ram_weight_multiplier=1.0,
        cpu_weight_multiplier=1.0,
        disk_weight_multiplier=1.0,
        io_ops_weight_multiplier=-1.0,
        num_instances_weight_multiplier=0.0,
    )
    built = [(w.name, w.multiplier) for w in build_weighers(settings)]
    assert built == [
        ("RAMWeigher", 1.0),
        ("CPUWeigher", 1.0),
        ("DiskWeigher", 1.0),
        ("IoOpsWeigher", -1.0),
    ]


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        pytest.param("ram_weight_multiplier", 0.0, None, id="a zero multiplier leaves it out"),
        pytest.param("cpu_weight_multiplier", -2.0, -2.0, id="a negative multiplier is kept"),
        pytest.param("num_instances_weight_multiplier", -1.0, -1.0, id="a non-zero brings it in"),
        pytest.param("disk_weight_multiplier", 0.5, 0.5, id="a fractional multiplier is kept"),
    ],
)
def test_build_weighers_reads_each_multiplier(
    setting: str, value: float, expected: float | None
) -> None:
    name = next(name for name, attr in MULTIPLIER_SETTINGS.items() if attr == setting)
    built = {w.name: w.multiplier for w in build_weighers(make_settings(**{setting: value}))}
    assert built.get(name) == expected


def test_every_weigher_has_a_multiplier_setting() -> None:
    assert set(MULTIPLIER_SETTINGS) == set(WEIGHERS)
    settings = make_settings()
    for attr in MULTIPLIER_SETTINGS.values():
        assert isinstance(getattr(settings, attr), float)
