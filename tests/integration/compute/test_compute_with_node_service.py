"""A compute agent beside a real registry and node service (on each database backend): it
registers itself, its nodes, their uuids and instances appear, and a vanished node is deleted."""

from __future__ import annotations

import asyncio
import uuid

import grpc
from berth.v1 import (
    common_pb2,
    compute_pb2,
    node_pb2,
    node_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

from services.compute.drivers.fake import FakeIronicDriver, ironic_node_uuid
from services.compute.state import Resources
from tests.integration.compute.support import agent_stub
from tests.integration.registry.support import key, status_of

WAIT_S = 10


def by_key(host: str, nodename: str) -> node_pb2.GetComputeNodeRequest:
    key = node_pb2.ComputeNodeKey(host=host, nodename=nodename)
    return node_pb2.GetComputeNodeRequest(node=node_pb2.ComputeNodeRef(key=key))


async def test_an_agents_node_and_instances_appear_in_the_node_service(start_node, start_compute):
    node_service = await start_node()
    agent = await start_compute(node_url=node_service.address)
    tracker = agent.manager.trackers["kvm-1"]
    async with agent_stub(agent) as stub:
        request = compute_pb2.BuildInstanceRequest(
            instance=node_pb2.Instance(
                uuid=str(uuid.uuid4()),
                project_id="demo",
                resources=common_pb2.Resources(vcpus=2, memory_mb=2048, disk_gb=20),
            ),
            claim_id=str(uuid.uuid4()),
        )
        built = (await stub.BuildInstance(request)).instance
    await tracker.wait_reported(timeout_s=WAIT_S)

    async with grpc.aio.insecure_channel(node_service.address) as channel:
        nodes = node_pb2_grpc.NodeServiceStub(channel)
        node = (await nodes.GetComputeNode(by_key("kvm-1", "kvm-1"))).node
        assert node.uuid == tracker.node_uuid and node.hypervisor_type == "QEMU"
        assert node.total.vcpus == 16 and node.used.memory_mb == 2048 + 512
        assert node.running_vms == 1 and list(node.numa_topology.cells)
        listed = await nodes.ListNodeInstances(
            node_pb2.ListNodeInstancesRequest(node=node_pb2.ComputeNodeRef(uuid=node.uuid))
        )
        assert [i.uuid for i in listed.instances] == [built.uuid]


async def test_every_bare_metal_node_reports_and_a_vanished_one_is_deleted(
    start_node, start_compute
):
    node_service = await start_node()
    agent = await start_compute(
        host="ironic-1", driver="fake-ironic", fake_nodes=3, node_url=node_service.address
    )
    for tracker in agent.manager.trackers.values():
        await tracker.wait_reported(1, timeout_s=WAIT_S)
    gone = ironic_node_uuid("ironic-1", 2)
    async with grpc.aio.insecure_channel(node_service.address) as channel:
        nodes = node_pb2_grpc.NodeServiceStub(channel)
        listed = await nodes.ListComputeNodes(node_pb2.ListComputeNodesRequest(host="ironic-1"))
        assert sorted(n.uuid for n in listed.nodes) == sorted(agent.manager.trackers)
        assert {n.used.vcpus for n in listed.nodes} == {0}

        agent.manager.driver = FakeIronicDriver(
            "ironic-1", "", Resources(16, 65536, 1000), 2, "ironic-1"
        )
        await agent.manager.refresh_nodes()
        await agent.manager.wait_nodes_deleted(timeout_s=WAIT_S)
        vanished = nodes.GetComputeNode(
            node_pb2.GetComputeNodeRequest(node=node_pb2.ComputeNodeRef(uuid=gone))
        )
        assert await status_of(vanished) is grpc.StatusCode.NOT_FOUND


async def test_a_bare_metal_nodes_class_and_its_instances_flavor_reach_the_node_service(
    start_node, start_compute
):
    node_service = await start_node()
    agent = await start_compute(
        host="ironic-1",
        driver="fake-ironic",
        fake_nodes=2,
        fake_ironic_resource_class="CUSTOM_BAREMETAL_GOLD",
        node_url=node_service.address,
    )
    node = ironic_node_uuid("ironic-1", 0)
    gold = {"resources:CUSTOM_BAREMETAL_GOLD": "1"}
    async with agent_stub(agent) as stub:
        request = compute_pb2.BuildInstanceRequest(
            instance=node_pb2.Instance(
                uuid=str(uuid.uuid4()),
                project_id="demo",
                resources=common_pb2.Resources(vcpus=1, memory_mb=1024, disk_gb=10),
                flavor_extra_specs=gold,
            ),
            nodename=node,
        )
        built = (await stub.BuildInstance(request)).instance
    await agent.manager.trackers[node].wait_reported(timeout_s=WAIT_S)

    async with grpc.aio.insecure_channel(node_service.address) as channel:
        nodes = node_pb2_grpc.NodeServiceStub(channel)
        listed = await nodes.ListComputeNodes(node_pb2.ListComputeNodesRequest(host="ironic-1"))
        assert {(n.resource_class, n.whole_machine) for n in listed.nodes} == {
            ("CUSTOM_BAREMETAL_GOLD", True)
        }
        taken = next(n for n in listed.nodes if n.uuid == node)
        assert taken.used == taken.total and taken.running_vms == 1
        instances = await nodes.ListNodeInstances(node_pb2.ListNodeInstancesRequest())
        assert [(i.uuid, dict(i.flavor_extra_specs)) for i in instances.instances] == [
            (built.uuid, gold)
        ]


async def test_the_agent_registers_itself_with_its_endpoint(start, start_compute):
    registry = await start()
    agent = await start_compute(registry_url=registry.address, report_self=True)
    assert agent.reporter is not None
    await asyncio.wait_for(agent.reporter.registered.wait(), WAIT_S)
    async with grpc.aio.insecure_channel(registry.address) as channel:
        services = registry_pb2_grpc.RegistryServiceStub(channel)
        found = await services.GetService(
            registry_pb2.GetServiceRequest(service=key("kvm-1", "berth-compute"))
        )
    assert found.service.endpoint == agent.address
