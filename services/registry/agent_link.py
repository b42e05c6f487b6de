"""What the registry asks of a host's compute agent (host-action, maintenance).

The agent is found through the services table: the `(host, berth-compute)` row holds its
endpoint and says whether it is up. One channel per endpoint is kept for the process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from berth.client.errors import NotFound, Unavailable, from_rpc_error
from berth.v1 import compute_pb2_grpc, registry_pb2
from google.protobuf.message import Message
from grpc import aio

from services.common import logs
from services.common.channels import aio_channel, call_metadata
from services.common.interceptors import REQUEST_ID_KEY
from services.common.settings import COMPUTE_BINARY, CommonSettings
from services.registry.services_table import ServicesTable

R = TypeVar("R", bound=Message)

# Answers of an agent that are about the request; anything else means it is not reachable.
_PASSED_ON = {
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.ABORTED,
}


def last_seen(service: registry_pb2.Service) -> str:
    """When the registry last heard the service, for people."""
    if not service.HasField("last_seen_up"):
        return "never heard from"
    return "last seen " + service.last_seen_up.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")


class AgentLink:
    def __init__(self, settings: CommonSettings, services: ServicesTable) -> None:
        self._settings = settings
        self._services = services
        self._channels: dict[str, aio.Channel] = {}

    async def compute_service(self, host: str) -> registry_pb2.Service:
        """The host's compute service row; NOT_FOUND (HOST_NOT_FOUND) when it has none."""
        ref = registry_pb2.ServiceRef(key=registry_pb2.ServiceKey(host=host, binary=COMPUTE_BINARY))
        try:
            return await self._services.get(ref)
        except NotFound:
            raise NotFound(
                f"host {host} has no compute service in the registry",
                reason="HOST_NOT_FOUND",
                metadata={"host": host},
            ) from None

    async def stub(
        self, host: str, *, require_up: bool = True
    ) -> tuple[compute_pb2_grpc.ComputeAgentServiceAsyncStub, registry_pb2.Service]:
        """The host's agent stub and its service row. UNAVAILABLE (AGENT_DOWN, with the
        last-seen time) when it is down, or has no endpoint."""
        service = await self.compute_service(host)
        if require_up and not service.up:
            raise Unavailable(
                f"the compute agent of host {host} is down ({last_seen(service)}); "
                "retry once it is back",
                reason="AGENT_DOWN",
                metadata={"host": host, "last_seen": last_seen(service)},
            )
        if not service.endpoint:
            raise Unavailable(
                f"the compute agent of host {host} registered no endpoint",
                reason="AGENT_NO_ENDPOINT",
                metadata={"host": host},
            )
        channel = self._channels.get(service.endpoint)
        if channel is None:
            channel = self._channels[service.endpoint] = aio_channel(
                service.endpoint, self._settings
            )
        return compute_pb2_grpc.ComputeAgentServiceStub(channel), service

    async def call(
        self,
        host: str,
        method: Callable[
            [compute_pb2_grpc.ComputeAgentServiceAsyncStub], Callable[..., Awaitable[R]]
        ],
        request: Message,
        *,
        what: str,
        deadline_s: float = 30.0,
        require_up: bool = True,
    ) -> R:
        """`method(stub)(request)` on the host's agent; the agent's own refusals pass on as
        they are, anything else is UNAVAILABLE naming the host and what was asked."""
        stub, service = await self.stub(host, require_up=require_up)
        metadata = call_metadata(self._settings, service.endpoint)
        if (request_id := logs.request_id.get()) != "-":
            # The agent logs under the same request id: its line joins the registry's, which
            # says who asked.
            metadata += ((REQUEST_ID_KEY, request_id),)
        try:
            return await method(stub)(request, metadata=metadata, timeout=deadline_s)
        except aio.AioRpcError as exc:
            if exc.code() in _PASSED_ON:
                raise from_rpc_error(exc) from None
            raise Unavailable(
                f"cannot reach the compute agent of host {host} at {service.endpoint} to "
                f"{what} ({exc.code().name}: {exc.details()}; {last_seen(service)})",
                reason="AGENT_UNAVAILABLE",
                metadata={"host": host, "last_seen": last_seen(service)},
            ) from None

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()
