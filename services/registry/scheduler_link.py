"""What the registry asks of the scheduler: where each instance of a host in maintenance goes
(a claimed destination), and to release claims it will not use."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import grpc
from berth.client.errors import Unavailable, from_rpc_error
from berth.v1 import scheduler_pb2, scheduler_pb2_grpc
from grpc import aio

from services.common.channels import aio_channel, call_metadata
from services.common.settings import CommonSettings

# Answers of the scheduler that are about the request; anything else means it is down (or,
# UNAVAILABLE itself, still building its cache).
_PASSED_ON = {
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class SchedulerLink:
    def __init__(self, settings: CommonSettings, scheduler_url: str) -> None:
        self._settings = settings
        self._url = scheduler_url
        self._channel: aio.Channel | None = None

    def _stub(self) -> scheduler_pb2_grpc.SchedulerServiceStub:
        if self._channel is None:
            self._channel = aio_channel(self._url, self._settings)
        return scheduler_pb2_grpc.SchedulerServiceStub(self._channel)

    async def select(self, spec: scheduler_pb2.RequestSpec) -> scheduler_pb2.Selection:
        """The selection of the spec's one instance: a claimed primary (alternates unused:
        their claims, if any, are released here). No room: ResourceExhausted."""
        request = scheduler_pb2.SelectDestinationsRequest(spec=spec)
        response = await self._call(
            self._stub().SelectDestinations,
            request,
            f"where instance {spec.instance_uuids[0]} goes",
        )
        (selection,) = response.selections
        # Alternates come back unclaimed; a scheduler that still claims them gets them back
        # (or, if it cannot be told now, lets them expire).
        with contextlib.suppress(Unavailable):
            await self.release(c.claim_id for c in selection.alternates)
        return selection

    async def release(self, claim_ids: Iterable[str]) -> None:
        ids = [claim_id for claim_id in claim_ids if claim_id]
        if ids:
            request = scheduler_pb2.ReleaseClaimsRequest(claim_ids=ids)
            await self._call(self._stub().ReleaseClaims, request, "to release claims")

    async def _call(self, method, request, what: str):  # type: ignore[no-untyped-def]
        try:
            return await method(
                request, metadata=call_metadata(self._settings, self._url), timeout=15
            )
        except aio.AioRpcError as exc:
            if exc.code() in _PASSED_ON:
                raise from_rpc_error(exc) from None
            raise Unavailable(
                f"cannot ask the scheduler at {self._url} {what} "
                f"({exc.code().name}: {exc.details()}); retry when it is back",
                reason="SCHEDULER_UNAVAILABLE",
            ) from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
