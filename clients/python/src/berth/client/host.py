"""HostClient: typed, synchronous calls to the registry's HostService (Nova's os-hosts)."""

from __future__ import annotations

from collections.abc import Iterator

from berth.client.base import BaseClient
from berth.client.errors import InvalidArgument
from berth.client.paging import paginate
from berth.v1 import host_pb2 as pb
from berth.v1 import host_pb2_grpc


class HostClient(BaseClient[host_pb2_grpc.HostServiceStub]):
    """Nova's os-hosts: host-list, host-describe, host-update, host-action; served by the
    registry, so it can share its channel."""

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

    def list_migrations(self, host: str = "") -> list[pb.Migration]:
        """The instance moves of hosts in maintenance (of `host` only, if given)."""
        request = pb.ListMigrationsRequest(host=host)
        return list(self._call(self._stub.ListMigrations, request).migrations)

    def update_host(
        self,
        host: str,
        *,
        status: pb.HostStatus.ValueType = pb.HOST_STATUS_UNSPECIFIED,
        disabled_reason: str = "",
        maintenance_mode: pb.MaintenanceMode.ValueType = pb.MAINTENANCE_MODE_UNSPECIFIED,
    ) -> Iterator[pb.UpdateHostResponse]:
        """host-update: `status` enables or disables the host's compute service (with
        `disabled_reason`); `maintenance_mode` enters maintenance (the registry moves every
        instance to another host of the host's aggregates) or leaves it. Yields progress as
        the registry streams it, the last message with `done` set; stopping early leaves the
        moves going on (asking again follows them)."""
        request = pb.UpdateHostRequest(
            host=host,
            status=status,
            disabled_reason=disabled_reason,
            maintenance_mode=maintenance_mode,
        )
        return self._stream(self._stub.UpdateHost, request)

    def host_action(
        self, host: str, action: pb.PowerAction.ValueType | str, *, nodename: str = ""
    ) -> pb.HostActionResponse:
        """host-action: start up, shut down or reboot `host` through its agent's driver
        (`action` a PowerAction or "startup", "shutdown", "reboot"); on bare metal, only
        `nodename` if given. UNIMPLEMENTED where the driver cannot, UNAVAILABLE (with the
        time it was last seen) while the host's agent is down."""
        request = pb.HostActionRequest(host=host, action=power_action(action), nodename=nodename)
        return self._call(self._stub.HostAction, request)

    def __repr__(self) -> str:
        return f"HostClient(target={self.target!r})"


POWER_ACTIONS = ("startup", "shutdown", "reboot")


def power_action(action: pb.PowerAction.ValueType | str) -> pb.PowerAction.ValueType:
    """A PowerAction from its number or its name ("reboot" or "POWER_ACTION_REBOOT")."""
    if not isinstance(action, str):
        return action
    name = action.strip().upper()
    try:
        return pb.PowerAction.Value(
            name if name.startswith("POWER_ACTION_") else f"POWER_ACTION_{name}"
        )
    except ValueError:
        raise InvalidArgument.field(
            "action", f"must be one of {', '.join(POWER_ACTIONS)} (got {action!r})"
        ) from None
