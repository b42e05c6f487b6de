"""HostClient: typed, synchronous calls to the registry's HostService (Nova's os-hosts)."""

from __future__ import annotations

from collections.abc import Iterator

from berth.client.base import BaseClient
from berth.client.paging import paginate
from berth.v1 import host_pb2 as pb
from berth.v1 import host_pb2_grpc


class HostClient(BaseClient):
    """host-list and host-describe; served by the registry, so it can share its channel."""

    server_name = "registry"
    stub_class = host_pb2_grpc.HostServiceStub

    def list_hosts(self, zone: str = "", page_size: int = 0) -> Iterator[pb.HostSummary]:
        """One row per (host, service), optionally only in `zone`; pages fetched as you iterate."""
        request = pb.ListHostsRequest(zone=zone, page_size=page_size)
        return paginate(self._list_hosts, request, lambda page: page.hosts)

    def _list_hosts(self, request: pb.ListHostsRequest) -> pb.ListHostsResponse:
        return self._call(self._stub.ListHosts, request)

    def describe_host(self, host: str) -> list[pb.HostResourceRow]:
        """Rows `(total)`, `(used_now)`, `(used_max)`, then one per project on the host."""
        request = pb.DescribeHostRequest(host=host)
        return list(self._call(self._stub.DescribeHost, request).rows)

    def __repr__(self) -> str:
        return f"HostClient(target={self.target!r})"
