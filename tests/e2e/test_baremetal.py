"""Bare metal by resource class, as a new user meets it: real processes (registry, node
service, a scheduler on a real Redis, two agents of VMs and a fake-ironic agent whose
servers offer CUSTOM_BAREMETAL_GOLD), driven through the `berth` CLI.

The issue this answers: `berth boot --flavor m1.medium --count 3 --group web --group-policy
anti-affinity` put two 2-vCPU instances on whole bare-metal servers. As in Nova with
Ironic, a bare-metal node offers one unit of its custom resource class and no vCPUs,
memory or disk of its own: only a flavor asking `resources:CUSTOM_<CLASS>=1` lands there,
and it takes the node whole."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from berth.client import ComputeClient, ResourceExhausted
from berth.v1 import common_pb2, scheduler_pb2

from tests.e2e.fleet import Fleet, eventually, spec
from tests.e2e.test_processes import BERTH

pytestmark = pytest.mark.slow

GOLD = "CUSTOM_BAREMETAL_GOLD"
Hints = scheduler_pb2.SchedulerHints
ANTI = common_pb2.GROUP_POLICY_ANTI_AFFINITY


@pytest.fixture
def fleet(tmp_path, redis_url, redis_prefix) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path, redis_url=redis_url, redis_prefix=redis_prefix)
    try:
        fleet.services(wait=False)
        fleet.agent("kvm-1", "fake", wait=False)
        fleet.agent("kvm-2", "fake", wait=False)
        fleet.agent(
            "ironic-1",
            "fake-ironic",
            wait=False,
            BERTH_FAKE_NODES="2",
            BERTH_FAKE_IRONIC_RESOURCE_CLASS=GOLD,
        )
        fleet.scheduler("scheduler-1", wait=False)
        fleet.wait_serving()
        fleet.ready(4)
        yield fleet
    finally:
        fleet.close()


def berth(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    """`berth --json ARGS` against the fleet, whatever its exit code."""
    command = [BERTH, "--registry", fleet.registry, "--node", fleet.node]
    command += ["--scheduler", fleet.scheduler_address(), "--json", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def booted(fleet: Fleet, *args: str) -> list[dict[str, Any]]:
    """`berth boot ARGS`, every instance built."""
    done = berth(fleet, "boot", *args)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert all(r["status"] == "active" for r in results), results
    return results


def filter_counts(error: ResourceExhausted) -> dict[str, int]:
    """{filter: nodes it removed} of a no-valid-host answer."""
    return {k: int(v) for k, v in error.metadata.items() if k not in ("nodes", "placed")}


def metal_taken(fleet: Fleet, nodename: str) -> bool:
    """The node service and the scheduler both count the bare-metal node as used whole."""
    (node,) = [
        n for n in json.loads(berth(fleet, "hypervisor-list").stdout) if n["nodename"] == nodename
    ]
    shown = json.loads(berth(fleet, "hypervisor-show", node["uuid"]).stdout)
    assert shown["used"] == shown["total"] and shown["running_vms"] == 1, shown
    (state,) = [s for s in fleet.host_states() if s.nodename == nodename]
    assert state.num_instances == 1 and not state.pending_claims, state
    assert state.used == state.total, state
    return True


def test_a_vm_flavor_never_lands_on_bare_metal_and_a_class_request_takes_a_node_whole(fleet):
    nodes = json.loads(berth(fleet, "hypervisor-list").stdout)
    offered = {n["host"]: (n["resource_class"], n["whole_machine"]) for n in nodes}
    assert offered == {"kvm-1": ("", False), "kvm-2": ("", False), "ironic-1": (GOLD, True)}

    # The command: three m1.medium kept apart, with two hosts of VMs. The third
    # member has nowhere to go: the servers of ironic-1 are not hosts of VMs.
    done = berth(
        fleet, "boot", "web", "--flavor", "m1.medium", "--count", "3",
        "--group", "web", "--group-policy", "anti-affinity",
    )  # fmt: skip
    assert done.returncode != 0, done.stdout
    assert "ResourceClassFilter" in done.stderr, done.stderr
    with pytest.raises(ResourceExhausted) as exhausted:
        fleet.boot(spec("m1.medium", count=3, hints=Hints(group="web", group_policy=ANTI)))
    assert exhausted.value.reason == "NO_VALID_HOST", exhausted.value
    assert filter_counts(exhausted.value).get("ResourceClassFilter") == 2, exhausted.value
    # Two members fit, one on each host of VMs.
    web = booted(
        fleet, "web", "--flavor", "m1.medium", "--count", "2",
        "--group", "web", "--group-policy", "anti-affinity",
    )  # fmt: skip
    assert sorted(r["host"] for r in web) == ["kvm-1", "kvm-2"]
    # Nor does a flavor of VMs forced onto the bare-metal host go there.
    with pytest.raises(ResourceExhausted) as forced:
        fleet.boot(spec("m1.small", hints=Hints(force_hosts=["ironic-1"])))
    assert "ResourceClassFilter" in filter_counts(forced.value), forced.value

    # A class no node offers (the baremetal flavor asks for CUSTOM_BAREMETAL) finds none.
    with pytest.raises(ResourceExhausted) as unknown:
        fleet.boot(spec("baremetal"))
    counts = filter_counts(unknown.value)
    assert sum(counts.values()) == 4 and "ResourceClassFilter" in counts, unknown.value

    # Asking for the servers' class: a whole server each, the nominal sizes notwithstanding.
    (first,) = booted(fleet, "hpc-1", "--flavor", "baremetal", "--resource-class", GOLD)
    assert first["host"] == "ironic-1"
    eventually(lambda: metal_taken(fleet, first["nodename"]), 10)
    (second,) = booted(fleet, "hpc-2", "--flavor", "m1.medium", "--resource-class", GOLD)
    assert second["host"] == "ironic-1" and second["nodename"] != first["nodename"]
    eventually(lambda: metal_taken(fleet, second["nodename"]), 10)
    # Both taken: a third finds no node, and never a host of VMs.
    failed = berth(fleet, "boot", "hpc-3", "--flavor", "baremetal", "--resource-class", GOLD)
    assert failed.returncode != 0 and "ERROR (ResourceExhausted)" in failed.stderr, failed.stderr

    # The agents say the same: VMs on the hosts of VMs, each server holding one instance
    # that asked for its class.
    with ComputeClient.connect(fleet.agents["ironic-1"]) as agent:
        metal = list(agent.list_instances())
    assert sorted(i.nodename for i in metal) == sorted([first["nodename"], second["nodename"]])
    assert all(dict(i.flavor_extra_specs) == {f"resources:{GOLD}": "1"} for i in metal)

    def reported() -> bool:
        assert sorted(fleet.instances().values()) == ["ironic-1", "ironic-1", "kvm-1", "kvm-2"]
        return True

    eventually(reported)
