"""A bare-metal node changes hands only when its owner's compute service is down."""

from __future__ import annotations

import uuid as uuidlib

import grpc
from berth.v1 import node_pb2, node_pb2_grpc, registry_pb2, registry_pb2_grpc

from tests.integration.node.support import by_key, instance, report, snapshot
from tests.integration.registry.support import key, register, status_of


async def test_a_node_moves_only_once_the_old_host_is_down(start, start_node):
    registry = await start()
    node_service = await start_node(registry_url=registry.address)
    async with (
        grpc.aio.insecure_channel(registry.address) as rc,
        grpc.aio.insecure_channel(node_service.address) as nc,
    ):
        services = registry_pb2_grpc.RegistryServiceStub(rc)
        nodes = node_pb2_grpc.NodeServiceStub(nc)
        await register(services, "ironic-a")
        await register(services, "ironic-b")
        bare_metal = str(uuidlib.uuid4())
        vm = instance()
        await report(nodes, snapshot("ironic-a", bare_metal, node_uuid=bare_metal, instances=(vm,)))

        claim = snapshot("ironic-b", bare_metal, node_uuid=bare_metal, instances=(vm,))
        assert await status_of(report(nodes, claim)) is grpc.StatusCode.FAILED_PRECONDITION
        owner = await nodes.GetComputeNode(
            node_pb2.GetComputeNodeRequest(node=node_pb2.ComputeNodeRef(uuid=bare_metal))
        )
        assert owner.node.host == "ironic-a" and owner.node.generation == 1

        await services.UpdateService(
            registry_pb2.UpdateServiceRequest(service=key("ironic-a"), forced_down=True)
        )
        moved = await report(nodes, claim)
        assert moved.changed and moved.node_uuid == bare_metal and moved.generation == 2
        node = (
            await nodes.GetComputeNode(
                node_pb2.GetComputeNodeRequest(node=by_key("ironic-b", bare_metal))
            )
        ).node
        assert node.host == "ironic-b" and node.running_vms == 1

        # The old host, back, cannot take it back while the new owner is up.
        stale = snapshot("ironic-a", bare_metal, sequence=2, node_uuid=bare_metal)
        assert await status_of(report(nodes, stale)) is grpc.StatusCode.FAILED_PRECONDITION


async def test_a_host_the_registry_does_not_know_counts_as_down(start, start_node):
    registry = await start()
    node_service = await start_node(registry_url=registry.address)
    async with grpc.aio.insecure_channel(node_service.address) as nc:
        nodes = node_pb2_grpc.NodeServiceStub(nc)
        bare_metal = str(uuidlib.uuid4())
        await report(nodes, snapshot("gone", bare_metal, node_uuid=bare_metal))
        moved = await report(nodes, snapshot("ironic-b", bare_metal, node_uuid=bare_metal))
        assert moved.generation == 2


async def test_without_the_registry_a_move_is_unavailable_not_guessed(nodes):
    bare_metal = str(uuidlib.uuid4())
    await report(nodes, snapshot("ironic-a", bare_metal, node_uuid=bare_metal))
    claim = snapshot("ironic-b", bare_metal, node_uuid=bare_metal)
    assert await status_of(report(nodes, claim)) is grpc.StatusCode.UNAVAILABLE
