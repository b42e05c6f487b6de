"""RegistryClient: typed, synchronous calls to the registry's services and aggregates."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cached_property

from berth.client.base import BaseClient
from berth.client.errors import InvalidArgument
from berth.client.host import HostClient
from berth.client.paging import paginate
from berth.v1 import registry_pb2 as pb
from berth.v1 import registry_pb2_grpc

_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I)


def looks_like_uuid(text: str) -> bool:
    """True for the 32 hex digits of a UUID, with or without dashes."""
    return bool(_UUID.match(text.strip()))


def service_ref(
    uuid: str | None = None, host: str | None = None, binary: str | None = None
) -> pb.ServiceRef:
    """A ServiceRef from a uuid, or from both host and binary."""
    if uuid:
        if host or binary:
            raise InvalidArgument.field("service", "give a uuid or host and binary, not both")
        return pb.ServiceRef(uuid=uuid)
    if host and binary:
        return pb.ServiceRef(key=pb.ServiceKey(host=host, binary=binary))
    raise InvalidArgument.field("service", "give a uuid, or both host and binary")


def aggregate_ref(name_or_uuid: str | int) -> pb.AggregateRef:
    """An int names an aggregate by its id (Nova's); a string that looks like a UUID by
    uuid, anything else by name."""
    if isinstance(name_or_uuid, int):
        return pb.AggregateRef(id=name_or_uuid)
    if looks_like_uuid(name_or_uuid):
        return pb.AggregateRef(uuid=name_or_uuid.strip())
    return pb.AggregateRef(name=name_or_uuid)


class RegistryClient(BaseClient[registry_pb2_grpc.RegistryServiceStub]):
    """The registry's RegistryService; `.hosts` is its HostService on the same channel."""

    server_name = "registry"
    stub_class = registry_pb2_grpc.RegistryServiceStub

    @cached_property
    def hosts(self) -> HostClient:
        """The HostService of the same registry, borrowing this client's channel."""
        return HostClient(self.channel, target=self.target, timeout=self.timeout)

    # -- services ---------------------------------------------------------------------------

    def register_service(
        self, host: str, binary: str, endpoint: str = "", topic: str = "", build_version: str = ""
    ) -> pb.RegisterServiceResponse:
        request = pb.RegisterServiceRequest(
            host=host, binary=binary, endpoint=endpoint, topic=topic, build_version=build_version
        )
        return self._call(self._stub.RegisterService, request)

    def heartbeat(self, service_uuid: str) -> pb.HeartbeatResult:
        request = pb.HeartbeatRequest(service_uuid=service_uuid)
        return self._call(self._stub.Heartbeat, request).result

    def list_services(
        self, host: str = "", binary: str = "", page_size: int = 0
    ) -> Iterator[pb.Service]:
        """Every matching service, ordered by id; pages are fetched as you iterate."""
        request = pb.ListServicesRequest(host=host, binary=binary, page_size=page_size)
        return paginate(self._list_services, request, lambda page: page.services)

    def _list_services(self, request: pb.ListServicesRequest) -> pb.ListServicesResponse:
        return self._call(self._stub.ListServices, request)

    def get_service(
        self, uuid: str | None = None, host: str | None = None, binary: str | None = None
    ) -> pb.Service:
        request = pb.GetServiceRequest(service=service_ref(uuid, host, binary))
        return self._call(self._stub.GetService, request).service

    def update_service(
        self,
        uuid: str | None = None,
        host: str | None = None,
        binary: str | None = None,
        *,
        disabled: bool | None = None,
        disabled_reason: str = "",
        forced_down: bool | None = None,
    ) -> pb.Service:
        """Change only what is given: `None` leaves `disabled` / `forced_down` as they are."""
        request = pb.UpdateServiceRequest(
            service=service_ref(uuid, host, binary), disabled_reason=disabled_reason
        )
        if disabled is not None:
            request.disabled = disabled
        if forced_down is not None:
            request.forced_down = forced_down
        return self._call(self._stub.UpdateService, request).service

    def enable_service(
        self, uuid: str | None = None, host: str | None = None, binary: str | None = None
    ) -> pb.Service:
        return self.update_service(uuid, host, binary, disabled=False)

    def disable_service(
        self,
        uuid: str | None = None,
        host: str | None = None,
        binary: str | None = None,
        *,
        reason: str = "",
    ) -> pb.Service:
        return self.update_service(uuid, host, binary, disabled=True, disabled_reason=reason)

    def force_down(
        self,
        uuid: str | None = None,
        host: str | None = None,
        binary: str | None = None,
        *,
        unset: bool = False,
    ) -> pb.Service:
        """Fence a service (reported down whatever its heartbeats say), or undo it with unset."""
        return self.update_service(uuid, host, binary, forced_down=not unset)

    def delete_service(
        self, uuid: str | None = None, host: str | None = None, binary: str | None = None
    ) -> None:
        request = pb.DeleteServiceRequest(service=service_ref(uuid, host, binary))
        self._call(self._stub.DeleteService, request)

    def watch_services(self, start_revision: int = 0) -> Iterator[pb.WatchServicesResponse]:
        """Services and aggregates as ADDED events, SYNCED, then every change; never ends on
        its own. Stop iterating (or close the iterator) to cancel the stream."""
        request = pb.WatchServicesRequest(start_revision=start_revision)
        return self._stream(self._stub.WatchServices, request)

    # -- aggregates -------------------------------------------------------------------------

    def create_aggregate(
        self, name: str, availability_zone: str = "", metadata: Mapping[str, str] | None = None
    ) -> pb.Aggregate:
        request = pb.CreateAggregateRequest(
            name=name, availability_zone=availability_zone, metadata=dict(metadata or {})
        )
        return self._call(self._stub.CreateAggregate, request).aggregate

    def delete_aggregate(self, name_or_uuid: str | int) -> None:
        request = pb.DeleteAggregateRequest(aggregate=aggregate_ref(name_or_uuid))
        self._call(self._stub.DeleteAggregate, request)

    def list_aggregates(self, page_size: int = 0) -> Iterator[pb.Aggregate]:
        """Every aggregate, ordered by name; pages are fetched as you iterate."""
        request = pb.ListAggregatesRequest(page_size=page_size)
        return paginate(self._list_aggregates, request, lambda page: page.aggregates)

    def _list_aggregates(self, request: pb.ListAggregatesRequest) -> pb.ListAggregatesResponse:
        return self._call(self._stub.ListAggregates, request)

    def get_aggregate(self, name_or_uuid: str | int) -> pb.Aggregate:
        request = pb.GetAggregateRequest(aggregate=aggregate_ref(name_or_uuid))
        return self._call(self._stub.GetAggregate, request).aggregate

    def add_aggregate_host(self, aggregate: str | int, host: str) -> pb.Aggregate:
        request = pb.AddAggregateHostRequest(aggregate=aggregate_ref(aggregate), host=host)
        return self._call(self._stub.AddAggregateHost, request).aggregate

    def remove_aggregate_host(self, aggregate: str | int, host: str) -> pb.Aggregate:
        request = pb.RemoveAggregateHostRequest(aggregate=aggregate_ref(aggregate), host=host)
        return self._call(self._stub.RemoveAggregateHost, request).aggregate

    def set_aggregate_metadata(
        self, aggregate: str | int, metadata: Mapping[str, str]
    ) -> pb.Aggregate:
        """Set keys; a key with an empty value is removed from the aggregate."""
        request = pb.SetAggregateMetadataRequest(
            aggregate=aggregate_ref(aggregate), metadata=dict(metadata)
        )
        return self._call(self._stub.SetAggregateMetadata, request).aggregate

    def update_aggregate(
        self, aggregate: str | int, *, name: str = "", availability_zone: str | None = None
    ) -> pb.Aggregate:
        """Rename it (`name`), set its zone (`availability_zone`; "" clears it), or both."""
        request = pb.UpdateAggregateRequest(aggregate=aggregate_ref(aggregate), name=name)
        if availability_zone is not None:
            request.availability_zone = availability_zone
        return self._call(self._stub.UpdateAggregate, request).aggregate

    def __repr__(self) -> str:
        return f"RegistryClient(target={self.target!r})"
