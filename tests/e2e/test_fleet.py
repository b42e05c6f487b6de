"""Real processes: a registry, a node service and compute agents of every fake driver,
over real channels, driven through the `berth` CLI and the client library."""

from __future__ import annotations

import subprocess
import uuid as uuidlib
from collections.abc import Iterator
from typing import Any

import pytest
from berth.client import ComputeClient, NodeClient
from berth.client.errors import Aborted, FailedPrecondition, ResourceExhausted
from berth.client.flavors import flavor
from berth.v1 import common_pb2, node_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from tests.e2e.fleet import Fleet, amounts, eventually
from tests.e2e.test_processes import BERTH

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("fleet"))
    try:
        database = f"sqlite:///{fleet.root}/registry.sqlite3"
        fleet.start("registry", "services.registry", fleet.registry, BERTH_DATABASE_URL=database)
        database = f"sqlite:///{fleet.root}/node.sqlite3"
        fleet.start("node", "services.node", fleet.node, BERTH_DATABASE_URL=database)
        fleet.agent("kvm-1", "fake")
        fleet.agent("vmware-1", "fake-cluster", BERTH_FAKE_CLUSTER_MEMBERS="3")
        fleet.agent("ironic-1", "fake-ironic", BERTH_FAKE_NODES="3")
        yield fleet
    finally:
        fleet.close()


def nodes_of(fleet: Fleet, host: str) -> list[dict[str, Any]]:
    return [n for n in fleet.berth("hypervisor-list") if n["host"] == host]


def test_every_driver_reports_its_nodes_with_the_right_totals(fleet):
    kvm = eventually(lambda: nodes_of(fleet, "kvm-1"))
    cluster = eventually(lambda: nodes_of(fleet, "vmware-1"))
    metal = eventually(
        lambda: len(nodes_of(fleet, "ironic-1")) == 3 and nodes_of(fleet, "ironic-1")
    )
    assert kvm[0]["nodename"] == "kvm-1" and kvm[0]["state"] == "up"
    shown = fleet.berth("hypervisor-show", kvm[0]["uuid"])
    assert amounts(shown["total"]) == [8, 16384, 100]
    assert amounts(shown["used"]) == [0, 512, 0]  # the reserved host memory
    whole = fleet.berth("hypervisor-show", cluster[0]["uuid"])
    assert amounts(whole["total"]) == [24, 49152, 300]
    assert {n["hypervisor_type"] for n in metal} == {"ironic"}
    # What each node offers: bare metal a custom class taken whole, VMs none.
    assert {(n["resource_class"], n["whole_machine"]) for n in metal} == {
        ("CUSTOM_BAREMETAL", True)
    }
    assert (kvm[0]["resource_class"], kvm[0]["whole_machine"]) == ("", False)
    stats = fleet.berth("hypervisor-stats")
    assert int(stats["count"]) >= 5 and int(stats["vcpus"]) >= 8 + 24 + 3 * 8


def test_host_describe_shows_each_projects_instances(fleet):
    with ComputeClient.connect(fleet.agents["kvm-1"]) as compute:
        for project, vcpus, memory in (("alpha", 2, 2048), ("beta", 1, 1024), ("alpha", 1, 512)):
            compute.build_instance(
                str(uuidlib.uuid4()), project_id=project, vcpus=vcpus, memory_mb=memory, disk_gb=10
            )

    def described() -> dict[str, list[int]]:
        rows = fleet.berth("host-describe", "kvm-1")
        table = {r["project"]: amounts(r["resources"]) for r in rows}
        assert "beta" in table
        return table

    table = eventually(described)
    assert table["(total)"] == [8, 16384, 100]
    assert table["(used_now)"] == [4, 3584 + 512, 30]
    assert table["(used_max)"] == [4, 3584, 30]
    assert table["alpha"] == [3, 2560, 20] and table["beta"] == [1, 1024, 10]


def test_a_bare_metal_node_is_taken_whole_by_an_instance_of_its_class_only(fleet):
    node = eventually(lambda: nodes_of(fleet, "ironic-1"))[0]
    with ComputeClient.connect(fleet.agents["ironic-1"]) as compute:
        # A VM's flavor asks for no class: the node's agent refuses it, however well it fits.
        with pytest.raises(ResourceExhausted) as refused:
            compute.build_instance(
                str(uuidlib.uuid4()), project_id="hpc", vcpus=2, memory_mb=4096, disk_gb=40,
                nodename=node["nodename"],
            )  # fmt: skip
        assert refused.value.reason == "RESOURCE_CLASS_MISMATCH"
        compute.build_instance(
            str(uuidlib.uuid4()), project_id="hpc", vcpus=8, memory_mb=16384, disk_gb=100,
            nodename=node["nodename"], flavor_extra_specs=flavor("baremetal").extra_specs,
        )  # fmt: skip

    def full() -> bool:
        shown = fleet.berth("hypervisor-show", node["uuid"])
        return amounts(shown["used"]) == amounts(shown["total"]) and shown["running_vms"] == 1

    eventually(full)


def test_an_agent_restart_keeps_node_uuids_and_instances(fleet):
    before = eventually(lambda: nodes_of(fleet, "kvm-1"))[0]
    servers = fleet.berth("hypervisor-servers", "--host", "kvm-1")
    assert fleet.stop("kvm-1") == 0
    fleet.agent("kvm-1", "fake")
    after = eventually(lambda: nodes_of(fleet, "kvm-1"))
    assert [n["uuid"] for n in after] == [before["uuid"]]
    again = fleet.berth("hypervisor-servers", "--host", "kvm-1")
    assert sorted(s["uuid"] for s in again) == sorted(s["uuid"] for s in servers)


def test_a_stale_snapshot_is_refused(fleet):
    node = eventually(lambda: nodes_of(fleet, "vmware-1"))[0]
    old = Timestamp()
    old.FromSeconds(1)
    stale = node_pb2.ResourceSnapshot(
        host="vmware-1", nodename=node["nodename"], node_uuid=node["uuid"], boot_epoch=old,
        sequence=1, hypervisor_type="VMware vCenter Server",
        total=common_pb2.Resources(vcpus=1, memory_mb=1, disk_gb=1),
        cpu_allocation_ratio=1, ram_allocation_ratio=1, disk_allocation_ratio=1,
    )  # fmt: skip
    with NodeClient.connect(fleet.node) as nodes, pytest.raises(Aborted):
        nodes.report_snapshot(stale)
    assert amounts(fleet.berth("hypervisor-show", node["uuid"])["total"])[0] == 24


def test_a_vanished_node_is_deleted(fleet):
    fleet.agent("ironic-v", "fake-ironic", BERTH_FAKE_NODES="3")
    eventually(lambda: len(nodes_of(fleet, "ironic-v")) == 3)
    assert fleet.stop("ironic-v") == 0
    fleet.agent("ironic-v", "fake-ironic", BERTH_FAKE_NODES="2")
    eventually(lambda: len(nodes_of(fleet, "ironic-v")) == 2, within_s=30)


def test_a_node_moves_to_another_host_only_once_its_owner_is_down(fleet):
    fleet.agent("rack-a", "fake-ironic", BERTH_FAKE_NODES="2", BERTH_FAKE_IRONIC_POOL="rack")
    owned = eventually(lambda: len(nodes_of(fleet, "rack-a")) == 2 and nodes_of(fleet, "rack-a"))
    with NodeClient.connect(fleet.node) as nodes, pytest.raises(FailedPrecondition):
        nodes.report_snapshot(_snapshot_of(owned[0], "rack-b"))  # rack-a's agent is up
    assert fleet.stop("rack-a") == 0
    done = subprocess.run(
        [BERTH, "--registry", fleet.registry, "service-force-down", "rack-a", "berth-compute"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    fleet.agent("rack-b", "fake-ironic", BERTH_FAKE_NODES="2", BERTH_FAKE_IRONIC_POOL="rack")
    moved = eventually(lambda: len(nodes_of(fleet, "rack-b")) == 2 and nodes_of(fleet, "rack-b"))
    assert sorted(n["uuid"] for n in moved) == sorted(n["uuid"] for n in owned)
    assert not nodes_of(fleet, "rack-a")
    assert "compute node moved to another host" in fleet.log("node")


def _snapshot_of(node: dict[str, Any], host: str) -> node_pb2.ResourceSnapshot:
    now = Timestamp()
    now.GetCurrentTime()
    return node_pb2.ResourceSnapshot(
        host=host, nodename=node["nodename"], node_uuid=node["uuid"], boot_epoch=now, sequence=1,
        hypervisor_type="ironic", total=common_pb2.Resources(vcpus=8, memory_mb=16384, disk_gb=100),
        cpu_allocation_ratio=1, ram_allocation_ratio=1, disk_allocation_ratio=1,
    )  # fmt: skip


def test_agents_stop_cleanly_on_sigterm(fleet):
    assert fleet.stop("vmware-1") == 0
