"""The registry with the node service: host-describe, and deleting a compute service."""

from __future__ import annotations

import grpc
from berth.v1 import (
    host_pb2,
    host_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

from tests.integration.node.support import instance, report, snapshot
from tests.integration.registry.support import key, register, status_of


async def test_host_describe_shows_total_used_and_each_project(start, start_node):
    node_service = await start_node()
    registry = await start(node_url=node_service.address)
    async with (
        grpc.aio.insecure_channel(node_service.address) as nc,
        grpc.aio.insecure_channel(registry.address) as rc,
    ):
        vms = (
            instance("alpha", 2, 2048, 20),
            instance("beta", 4, 4096, 40),
            instance("alpha", 1, 1024, 10),
        )
        await report(node_pb2_grpc.NodeServiceStub(nc), snapshot("kvm-1", instances=vms))
        rows = (
            await host_pb2_grpc.HostServiceStub(rc).DescribeHost(
                host_pb2.DescribeHostRequest(host="kvm-1")
            )
        ).rows
        table = [
            (r.host, r.project, r.resources.vcpus, r.resources.memory_mb, r.resources.disk_gb)
            for r in rows
        ]
        assert table == [
            ("kvm-1", "(total)", 16, 32768, 500),
            ("kvm-1", "(used_now)", 7, 7168 + 512, 70),
            ("kvm-1", "(used_max)", 7, 7168, 70),
            ("kvm-1", "alpha", 3, 3072, 30),
            ("kvm-1", "beta", 4, 4096, 40),
        ]
        unknown = host_pb2_grpc.HostServiceStub(rc).DescribeHost(
            host_pb2.DescribeHostRequest(host="nowhere")
        )
        assert await status_of(unknown) is grpc.StatusCode.NOT_FOUND


async def test_a_compute_service_with_instances_is_not_deleted(start, start_node):
    node_service = await start_node()
    registry = await start(node_url=node_service.address)
    async with (
        grpc.aio.insecure_channel(node_service.address) as nc,
        grpc.aio.insecure_channel(registry.address) as rc,
    ):
        services = registry_pb2_grpc.RegistryServiceStub(rc)
        nodes = node_pb2_grpc.NodeServiceStub(nc)
        await register(services, "kvm-1")
        await report(nodes, snapshot("kvm-1", instances=(instance(),)))
        delete = registry_pb2.DeleteServiceRequest(service=key("kvm-1"))
        assert (
            await status_of(services.DeleteService(delete)) is grpc.StatusCode.FAILED_PRECONDITION
        )
        assert (
            await services.GetService(registry_pb2.GetServiceRequest(service=key("kvm-1")))
        ).service.host

        await report(nodes, snapshot("kvm-1", sequence=2))  # its instance is gone now
        await services.DeleteService(delete)
        assert not (await nodes.ListComputeNodes(node_pb2.ListComputeNodesRequest())).nodes


async def test_without_the_node_service_a_compute_service_is_not_deleted(start):
    registry = await start(node_url="127.0.0.1:1")  # nothing listens there
    async with grpc.aio.insecure_channel(registry.address) as rc:
        services = registry_pb2_grpc.RegistryServiceStub(rc)
        await register(services, "kvm-1")
        delete = registry_pb2.DeleteServiceRequest(service=key("kvm-1"))
        assert await status_of(services.DeleteService(delete)) is grpc.StatusCode.UNAVAILABLE
        await register(services, "scheduler-host", "berth-scheduler")
        await services.DeleteService(
            registry_pb2.DeleteServiceRequest(service=key("scheduler-host", "berth-scheduler"))
        )
