"""A node's resource class and whole_machine flag, and an instance's flavor extra specs, as
the node service stores and returns them: get, list, search, watch events, instances."""

from __future__ import annotations

from berth.v1 import common_pb2, node_pb2

from tests.integration.node.support import by_key, instance, report, snapshot
from tests.integration.registry.support import take

ADDED, MODIFIED, SYNCED = (
    common_pb2.EVENT_TYPE_ADDED,
    common_pb2.EVENT_TYPE_MODIFIED,
    common_pb2.EVENT_TYPE_SYNCED,
)
GOLD = "CUSTOM_BAREMETAL_GOLD"


def bare_metal(sequence: int = 1, **fields) -> node_pb2.ResourceSnapshot:
    """A bare-metal server of class GOLD, nothing reserved, as fake-ironic reports one."""
    values = {
        "reserved_memory_mb": 0,
        "cpu_allocation_ratio": 1.0,
        "ram_allocation_ratio": 1.0,
        "hypervisor_type": "ironic",
        "resource_class": GOLD,
        "whole_machine": True,
    }
    return snapshot("ironic-1", "bm-0", sequence, **(values | fields))


def class_of(node: node_pb2.ComputeNode) -> tuple[str, bool]:
    return node.resource_class, node.whole_machine


async def test_a_nodes_class_and_whole_machine_flag_come_back_from_every_read(nodes):
    await report(nodes, snapshot("kvm-1"))
    created = await report(nodes, bare_metal())

    got = (
        await nodes.GetComputeNode(node_pb2.GetComputeNodeRequest(node=by_key("ironic-1", "bm-0")))
    ).node
    assert got.uuid == created.node_uuid and class_of(got) == (GOLD, True)
    listed = (await nodes.ListComputeNodes(node_pb2.ListComputeNodesRequest())).nodes
    assert {n.nodename: class_of(n) for n in listed} == {"kvm-1": ("", False), "bm-0": (GOLD, True)}
    found = await nodes.SearchComputeNodes(
        node_pb2.SearchComputeNodesRequest(nodename_pattern="bm")
    )
    assert [class_of(n) for n in found.nodes] == [(GOLD, True)]


async def test_watch_events_carry_the_class_and_a_changed_class_is_a_change(nodes):
    await report(nodes, bare_metal())
    watch = nodes.WatchComputeNodes(node_pb2.WatchComputeNodesRequest())
    listing = await take(watch, 2)
    assert [e.type for e in listing] == [ADDED, SYNCED]
    assert class_of(listing[0].node) == (GOLD, True)

    # The operator reclassifies the server (Ironic: `baremetal node set --resource-class`).
    changed = await report(nodes, bare_metal(2, resource_class="CUSTOM_BAREMETAL_SILVER"))
    assert changed.changed
    (event,) = await take(watch, 1)
    assert event.type == MODIFIED
    assert class_of(event.node) == ("CUSTOM_BAREMETAL_SILVER", True)
    # A new node's first report is an ADDED event with its class.
    await report(
        nodes,
        snapshot("ironic-1", "bm-1", reserved_memory_mb=0, resource_class=GOLD, whole_machine=True),
    )
    (added,) = await take(watch, 1)
    assert added.type == ADDED and class_of(added.node) == (GOLD, True)
    watch.cancel()


async def test_an_instance_keeps_its_flavors_extra_specs(nodes):
    specs = {f"resources:{GOLD}": "1", "trait:CUSTOM_RAID": "required"}
    metal = instance(vcpus=16, memory_mb=32768, disk_gb=500, flavor_extra_specs=specs)
    vm = instance()
    await report(nodes, bare_metal(instances=(metal,)))
    await report(nodes, snapshot("kvm-1", instances=(vm,)))
    listed = await nodes.ListNodeInstances(node_pb2.ListNodeInstancesRequest())
    assert {i.uuid: dict(i.flavor_extra_specs) for i in listed.instances} == {
        metal.uuid: specs,
        vm.uuid: {},
    }
