"""What the registry asks of the node service: a host's usage (host-describe), before a
compute service is deleted the deletion of its host's nodes, and for maintenance moves the
host's nodes (their hypervisor types and resource classes) and where instances are."""

from __future__ import annotations

import grpc
from berth.v1 import node_pb2, node_pb2_grpc

from services.common import paging
from services.common.channels import PeerLink


class NodeLink(PeerLink):
    peer = "the node service"
    unavailable_reason = "NODE_SERVICE_UNAVAILABLE"
    # Answers of the node service that are about the request; anything else means it is down.
    passed_on = frozenset(
        {
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.PERMISSION_DENIED,
        }
    )

    def _stub(self) -> node_pb2_grpc.NodeServiceAsyncStub:
        return node_pb2_grpc.NodeServiceStub(self.channel)

    async def host_usage(self, host: str) -> node_pb2.GetHostUsageResponse:
        request = node_pb2.GetHostUsageRequest(host=host)
        return await self._call(self._stub().GetHostUsage, request, f"the usage of host {host}")

    async def delete_host_nodes(self, host: str) -> int:
        """The HostGuard of the services table: refuses (FAILED_PRECONDITION) while the host
        has instances; the registry does not delete a compute service it could not ask about."""
        request = node_pb2.DeleteHostNodesRequest(host=host)
        response = await self._call(
            self._stub().DeleteHostNodes, request, f"whether host {host} still has instances"
        )
        return response.deleted

    async def nodes_of(self, host: str) -> dict[str, node_pb2.ComputeNode]:
        """The host's nodes by nodename (their hypervisor types and resource classes say
        where their instances may move)."""
        nodes = await paging.every_item(
            lambda r: self._call(self._stub().ListComputeNodes, r, f"the nodes of host {host}"),
            node_pb2.ListComputeNodesRequest(host=host, page_size=paging.MAX_PAGE_SIZE),
            lambda page: page.nodes,
        )
        return {node.nodename: node for node in nodes}

    async def instances(self, *, host: str = "", uuid: str = "") -> list[node_pb2.Instance]:
        """The instances the node service knows on `host`, or the copies of instance `uuid`
        (one per node that reports it)."""
        return await paging.every_item(
            lambda r: self._call(
                self._stub().ListNodeInstances, r, f"the instances of {host or uuid}"
            ),
            node_pb2.ListNodeInstancesRequest(
                host=host, instance_uuids=[uuid] if uuid else [], page_size=paging.MAX_PAGE_SIZE
            ),
            lambda page: page.instances,
        )
