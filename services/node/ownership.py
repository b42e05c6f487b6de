"""Whether a host's compute service is up, asked of the registry when a node changes hands.

Only a snapshot that claims another host's node needs this (an Ironic-like rebalance), so
the node service asks the registry then instead of following every heartbeat.
"""

from __future__ import annotations

import grpc
from berth.client.errors import Unavailable
from berth.v1 import registry_pb2, registry_pb2_grpc
from grpc import aio

from services.common.channels import aio_channel, call_metadata
from services.common.settings import COMPUTE_BINARY, CommonSettings


class ComputeLiveness:
    def __init__(self, settings: CommonSettings) -> None:
        self._settings = settings
        self._channel: aio.Channel | None = None

    async def is_up(self, host: str) -> bool:
        """True while the registry counts `host`'s compute service up; a deleted or
        unknown service is down. UNAVAILABLE when the registry cannot say."""
        if self._channel is None:
            self._channel = aio_channel(self._settings.registry_url, self._settings)
        stub = registry_pb2_grpc.RegistryServiceStub(self._channel)
        ref = registry_pb2.ServiceRef(key=registry_pb2.ServiceKey(host=host, binary=COMPUTE_BINARY))
        try:
            response = await stub.GetService(
                registry_pb2.GetServiceRequest(service=ref),
                metadata=call_metadata(self._settings, self._settings.registry_url),
                timeout=5,
            )
        except aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return False
            raise Unavailable(
                f"cannot ask the registry whether host {host}'s compute service is down "
                f"({exc.code().name}: {exc.details()}); retry",
                reason="REGISTRY_UNAVAILABLE",
            ) from None
        return response.service.up

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
