"""HostService over gRPC (Nova's os-hosts): host-list, host-describe, host-action (power.py),
host-update (maintenance.py)."""

from __future__ import annotations

from berth.client.errors import Unimplemented
from berth.v1 import host_pb2, host_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common import paging, validation
from services.registry import convert
from services.registry.agent_link import AgentLink
from services.registry.maintenance import Maintenance
from services.registry.node_link import NodeLink
from services.registry.power import PowerActions
from services.registry.services_table import ServicesTable
from services.registry.store import maintenance as maintenance_store
from services.registry.store import repository as repo


class HostServicer(host_pb2_grpc.HostServiceServicer):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        services: ServicesTable,
        node_link: NodeLink,
        agent_link: AgentLink,
        maintenance: Maintenance | None = None,
    ) -> None:
        self._sessions = sessions
        self._services = services
        self._node_link = node_link
        self._agent_link = agent_link
        self._maintenance = maintenance

    async def ListHosts(self, request, context):
        """One row per live service, as os-hosts: (host_name, service topic, zone)."""
        zone = validation.name("zone", request.zone, required=False)
        query = ("hosts", zone)
        page = paging.read_page(request.page_size, request.page_token, query)
        rows: list[host_pb2.HostSummary] = []
        after = page.after_id
        token = ""
        async with self._sessions() as session:
            while len(rows) < page.size:
                batch = await repo.list_services(session, after_id=after, limit=page.size * 2)
                if not batch:
                    break
                for row, proto in zip(
                    batch, await self._services.protos(session, batch), strict=True
                ):
                    after = row.id
                    if zone and proto.availability_zone != zone:
                        continue
                    rows.append(
                        host_pb2.HostSummary(
                            host_name=row.host, service=row.topic, zone=proto.availability_zone
                        )
                    )
                    if len(rows) == page.size:
                        break
            # A full page has a last row (page sizes start at 1), so `after` is set.
            if (
                after is not None
                and len(rows) == page.size
                and await repo.list_services(session, after_id=after, limit=1)
            ):
                token = paging.encode_token(after, query)
        return host_pb2.ListHostsResponse(hosts=rows, next_page_token=token)

    async def DescribeHost(self, request, context):
        """Rows as Nova's os-hosts show: (total), (used_now), (used_max), then each project."""
        host = validation.name("host", request.host)
        usage = await self._node_link.host_usage(host)
        rows = [
            host_pb2.HostResourceRow(host=host, project="(total)", resources=usage.total),
            host_pb2.HostResourceRow(host=host, project="(used_now)", resources=usage.used_now),
            host_pb2.HostResourceRow(host=host, project="(used_max)", resources=usage.used_max),
        ]
        rows += [
            host_pb2.HostResourceRow(host=host, project=p.project_id, resources=p.resources)
            for p in usage.projects
        ]
        return host_pb2.DescribeHostResponse(rows=rows)

    async def UpdateHost(self, request, context):
        """Enable / disable the compute service, or enter / leave maintenance mode (the
        registry moves the host's instances: services/registry/maintenance.py)."""
        if self._maintenance is None:
            raise Unimplemented("this registry conducts no host updates", reason="NO_CONDUCTOR")
        async for message in self._maintenance.update_host(request):
            yield message

    async def ListMigrations(self, request, context):
        host = validation.name("host", request.host, required=False)
        async with self._sessions() as session:
            rows = await (
                maintenance_store.moves(session, host)
                if host
                else maintenance_store.all_moves(session)
            )
        return host_pb2.ListMigrationsResponse(migrations=[convert.migration(row) for row in rows])

    async def HostAction(self, request, context):
        """Start up, shut down or reboot a host through its agent's driver."""
        return await PowerActions(self._agent_link).act(request)
