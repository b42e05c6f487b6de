"""Maintenance moves' pure parts: progress counts from the move rows, bounded retries, and
what a move asks the scheduler for."""

from __future__ import annotations

import pytest
from berth.client.errors import FailedPrecondition, NotFound, Unavailable
from berth.v1 import common_pb2, node_pb2

from services.registry import moves
from services.registry.store import maintenance as store
from services.registry.store.models import InstanceMove


def row(uuid: str, state: str, reason: str = "") -> InstanceMove:
    return InstanceMove(instance_uuid=uuid, state=state, reason=reason)


def test_progress_counts_moved_remaining_and_those_that_stay_for_now():
    rows = [
        row("a", store.DONE),
        row("b", store.DONE),
        row("c", store.PENDING),
        row("d", store.SELECTED),  # under way
        row("e", store.BUILT, "not yet deleted: the agent is down"),  # held until asked again
        row("f", store.FAILED, "no room"),
    ]
    moved, remaining, stays = moves.counts(rows)
    assert (moved, remaining) == (2, 2)
    assert stays == [("e", "not yet deleted: the agent is down"), ("f", "no room")]


async def test_a_transient_failure_is_retried_until_it_succeeds(monkeypatch):
    monkeypatch.setattr(moves.asyncio, "sleep", _no_sleep)
    answers = [Unavailable("down"), FailedPrecondition("busy", reason="INSTANCE_BUSY"), "ok"]

    async def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await moves.retrying(call, 60) == "ok"


@pytest.mark.parametrize(
    "error",
    [NotFound("gone"), FailedPrecondition("in maintenance", reason="HOST_IN_MAINTENANCE")],
)
async def test_a_refusal_is_not_retried(error):
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)):
        await moves.retrying(call, 60)
    assert calls == 1


async def test_retries_stop_once_the_time_is_up():
    async def call() -> None:
        raise Unavailable("down")

    with pytest.raises(Unavailable):
        await moves.retrying(call, 0.3)


async def _no_sleep(delay: float) -> None:
    return None


def a_pass(*nodes: node_pb2.ComputeNode) -> moves.MovePass:
    """A pass over host `ironic-1` that knows its nodes (no database or peers needed)."""
    move_pass = moves.MovePass("ironic-1", None, None, None, 1.0)  # type: ignore[arg-type]
    move_pass.source_nodes = {node.nodename: node for node in nodes}
    return move_pass


METAL_NODE = node_pb2.ComputeNode(
    nodename="bm-0",
    hypervisor_type="ironic",
    resource_class="CUSTOM_BAREMETAL_GOLD",
    whole_machine=True,
)
VM_NODE = node_pb2.ComputeNode(nodename="kvm-1", hypervisor_type="QEMU")


def on(nodename: str, **specs: str) -> node_pb2.Instance:
    return node_pb2.Instance(
        uuid="00000000-0000-4000-8000-000000000001",
        project_id="p1",
        nodename=nodename,
        resources=common_pb2.Resources(vcpus=2, memory_mb=4096, disk_gb=40),
        flavor_extra_specs=specs,
    )


def test_a_move_asks_with_the_instances_flavor_extra_specs_and_hypervisor_type():
    specs = {"resources:CUSTOM_BAREMETAL_GOLD": "1", "ssd": "true"}
    spec = a_pass(METAL_NODE)._spec(on("bm-0", **specs), set())
    assert dict(spec.flavor.extra_specs) == specs
    assert (spec.flavor.vcpus, spec.flavor.memory_mb, spec.flavor.root_gb) == (2, 4096, 40)
    assert spec.hypervisor_type == "ironic"
    assert spec.hints.same_aggregate_as_host == "ironic-1"


def test_an_instance_that_kept_no_specs_on_a_bare_metal_node_asks_for_the_nodes_class():
    # Built before instances kept their flavor's extra specs: it took a GOLD node whole.
    spec = a_pass(METAL_NODE)._spec(on("bm-0"), set())
    assert dict(spec.flavor.extra_specs) == {"resources:CUSTOM_BAREMETAL_GOLD": "1"}
    # A VM keeps what it had: nothing, or its own specs.
    assert not a_pass(VM_NODE)._spec(on("kvm-1"), set()).flavor.extra_specs
    assert dict(a_pass(VM_NODE)._spec(on("kvm-1", ssd="true"), set()).flavor.extra_specs) == {
        "ssd": "true"
    }
