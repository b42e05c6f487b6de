"""What the registry asks of the node service: a host's usage (host-describe), before a
compute service is deleted the deletion of its host's nodes, and for maintenance moves the
host's nodes (their hypervisor types) and where instances are."""

from __future__ import annotations

import grpc
from berth.client.errors import Unavailable, from_rpc_error
from berth.v1 import node_pb2, node_pb2_grpc
from grpc import aio

from services.common.channels import aio_channel, call_metadata
from services.common.settings import CommonSettings

# Answers of the node service that are about the request; anything else means it is down.
_PASSED_ON = {
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
}


class NodeLink:
    def __init__(self, settings: CommonSettings, node_url: str) -> None:
        self._settings = settings
        self._url = node_url
        self._channel: aio.Channel | None = None

    def _stub(self) -> node_pb2_grpc.NodeServiceStub:
        if self._channel is None:
            self._channel = aio_channel(self._url, self._settings)
        return node_pb2_grpc.NodeServiceStub(self._channel)

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

    async def node_types(self, host: str) -> dict[str, str]:
        """nodename -> hypervisor type of each of the host's nodes."""
        request = node_pb2.ListComputeNodesRequest(host=host, page_size=1000)
        types: dict[str, str] = {}
        while True:
            page = await self._call(
                self._stub().ListComputeNodes, request, f"the nodes of host {host}"
            )
            types |= {node.nodename: node.hypervisor_type for node in page.nodes}
            if not page.next_page_token:
                return types
            request.page_token = page.next_page_token

    async def instances(self, *, host: str = "", uuid: str = "") -> list[node_pb2.Instance]:
        """The instances the node service knows on `host`, or the copies of instance `uuid`
        (one per node that reports it)."""
        request = node_pb2.ListNodeInstancesRequest(
            host=host, instance_uuids=[uuid] if uuid else [], page_size=1000
        )
        found: list[node_pb2.Instance] = []
        while True:
            page = await self._call(
                self._stub().ListNodeInstances, request, f"the instances of {host or uuid}"
            )
            found += page.instances
            if not page.next_page_token:
                return found
            request.page_token = page.next_page_token

    async def _call(self, method, request, what: str):  # type: ignore[no-untyped-def]
        try:
            return await method(
                request, metadata=call_metadata(self._settings, self._url), timeout=10
            )
        except aio.AioRpcError as exc:
            if exc.code() in _PASSED_ON:
                raise from_rpc_error(exc) from None
            raise Unavailable(
                f"cannot ask the node service at {self._url} {what} "
                f"({exc.code().name}: {exc.details()}); retry when it is back",
                reason="NODE_SERVICE_UNAVAILABLE",
            ) from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
