"""SchedulerClient: typed, synchronous calls to the scheduler (SchedulerService)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from berth.client.base import BaseClient
from berth.client.paging import paginate
from berth.v1 import scheduler_pb2 as pb
from berth.v1 import scheduler_pb2_grpc


class SchedulerClient(BaseClient[scheduler_pb2_grpc.SchedulerServiceStub]):
    """The scheduler: claimed destinations for new instances, and its HostState cache."""

    server_name = "scheduler"
    stub_class = scheduler_pb2_grpc.SchedulerServiceStub

    def select_destinations(self, spec: pb.RequestSpec) -> list[pb.Selection]:
        """One Selection per instance: a claimed primary and unclaimed alternates. Every
        primary claim is held until it is consumed by a build, released, or expires;
        callers release what they do not use. Nothing fits: ResourceExhausted."""
        request = pb.SelectDestinationsRequest(spec=spec)
        return list(self._call(self._stub.SelectDestinations, request).selections)

    def claim_alternate(self, spec: pb.RequestSpec, instance_uuid: str, node_uuid: str) -> pb.Claim:
        """Claim an alternate of `instance_uuid` after its primary failed; ResourceExhausted
        (CLAIM_REFUSED) when the node no longer fits, NotFound when it is gone."""
        one = pb.RequestSpec()
        one.CopyFrom(spec)
        one.num_instances = 1
        one.ClearField("instance_uuids")
        one.instance_uuids.append(instance_uuid)
        request = pb.ClaimAlternateRequest(
            spec=one, instance_uuid=instance_uuid, node_uuid=node_uuid
        )
        return self._call(self._stub.ClaimAlternate, request).claim

    def release_claims(self, claim_ids: Iterable[str]) -> int:
        """Release claims that will not be used; returns how many still existed. No ids: no
        call."""
        ids = [claim_id for claim_id in claim_ids if claim_id]
        if not ids:
            return 0
        request = pb.ReleaseClaimsRequest(claim_ids=ids)
        return int(self._call(self._stub.ReleaseClaims, request).released)

    def list_host_states(self, host: str = "", page_size: int = 0) -> Iterator[pb.HostState]:
        """The cached HostState of every node (of `host`, if given) with its pending claims;
        pages are fetched as you iterate."""
        request = pb.ListHostStatesRequest(host=host, page_size=page_size)
        return paginate(self._list_host_states, request, lambda page: page.host_states)

    def _list_host_states(self, request: pb.ListHostStatesRequest) -> pb.ListHostStatesResponse:
        return self._call(self._stub.ListHostStates, request)

    def resync(self) -> pb.ResyncResponse:
        """Rebuild the cache from the registry and the node service (nodes, services, ms)."""
        return self._call(self._stub.Resync, pb.ResyncRequest())

    def __repr__(self) -> str:
        return f"SchedulerClient(target={self.target!r})"
