"""What the registry asks of the scheduler: where each instance of a host in maintenance goes
(a claimed destination), and to release claims it will not use."""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from berth.v1 import scheduler_pb2, scheduler_pb2_grpc

from services.common.channels import PeerLink


class SchedulerLink(PeerLink):
    peer = "the scheduler"
    unavailable_reason = "SCHEDULER_UNAVAILABLE"
    # Answers of the scheduler that are about the request; anything else means it is down
    # (or, UNAVAILABLE itself, still building its cache).
    passed_on = frozenset(
        {
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        }
    )
    deadline_s = 15.0

    def _stub(self) -> scheduler_pb2_grpc.SchedulerServiceAsyncStub:
        return scheduler_pb2_grpc.SchedulerServiceStub(self.channel)

    async def select(self, spec: scheduler_pb2.RequestSpec) -> scheduler_pb2.Selection:
        """The selection of the spec's one instance: a claimed primary (its alternates come
        back unclaimed and are not used). No room: ResourceExhausted."""
        request = scheduler_pb2.SelectDestinationsRequest(spec=spec)
        response = await self._call(
            self._stub().SelectDestinations,
            request,
            f"where instance {spec.instance_uuids[0]} goes",
        )
        (selection,) = response.selections
        return selection

    async def release(self, claim_ids: Iterable[str]) -> None:
        ids = [claim_id for claim_id in claim_ids if claim_id]
        if ids:
            request = scheduler_pb2.ReleaseClaimsRequest(claim_ids=ids)
            await self._call(self._stub().ReleaseClaims, request, "to release claims")
