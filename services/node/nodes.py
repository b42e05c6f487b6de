"""The compute nodes as operators see them: lookups, listings, usage, deletion."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

from berth.client.errors import FailedPrecondition, InvalidArgument, NotFound
from berth.v1 import common_pb2, node_pb2
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common import auth, changefeed, db, paging, validation
from services.node import convert
from services.node.events import NodeFeed
from services.node.store import repository as repo

log = logging.getLogger(__name__)

DELETED = common_pb2.EVENT_TYPE_DELETED
# Most uuids one ListNodeInstances may filter on (the contract's limit).
MAX_INSTANCE_FILTER = 1000


class Nodes:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        feed: NodeFeed,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self._feed = feed
        self._clock = clock

    async def protos(
        self, session: AsyncSession, rows: Sequence[RowMapping]
    ) -> list[node_pb2.ComputeNode]:
        """The nodes as messages, with their instances' uuids and claim ids (one query per
        thousand nodes)."""
        keys = await repo.instance_keys(session, [row["id"] for row in rows])
        return [
            convert.node(
                row,
                claim_ids=[claim for _, claim in keys.get(row["id"], ())],
                instance_uuids=[uuid for uuid, _ in keys.get(row["id"], ())],
            )
            for row in rows
        ]

    async def find(
        self, session: AsyncSession, ref: node_pb2.ComputeNodeRef, *, for_update: bool = False
    ) -> RowMapping:
        which = ref.WhichOneof("ref")
        if which == "uuid":
            uuid = validation.uuid("node.uuid", ref.uuid)
            row = await repo.node_by_uuid(session, uuid, for_update=for_update)
            missing = f"no compute node with uuid {uuid}"
        elif which == "key":
            host = validation.name("node.key.host", ref.key.host)
            nodename = validation.name("node.key.nodename", ref.key.nodename)
            row = await repo.node_by_key(session, host, nodename, for_update=for_update)
            missing = f"no compute node {nodename} on host {host}"
        else:
            raise InvalidArgument.field(
                "node", "name the node by uuid or by key (host and nodename)"
            )
        if row is None:
            raise NotFound(missing, reason="NODE_NOT_FOUND")
        return row

    async def get(self, ref: node_pb2.ComputeNodeRef) -> node_pb2.ComputeNode:
        async with self._sessions() as session:
            (proto,) = await self.protos(session, [await self.find(session, ref)])
        return proto

    async def list_page(
        self, *, host: str, pattern: str, page_size: int, page_token: str
    ) -> tuple[list[node_pb2.ComputeNode], str]:
        query = ("nodes", host, pattern)
        page = paging.read_page(page_size, page_token, query)
        async with self._sessions() as session:
            rows = await repo.list_nodes(
                session,
                host=host,
                nodename_contains=pattern,
                after_id=page.after_id,
                limit=page.size + 1,
            )
            protos = await self.protos(session, rows[: page.size])
        return protos, paging.next_token(list(rows), page, "id", query)

    async def statistics(self) -> node_pb2.GetStatisticsResponse:
        async with self._sessions() as session:
            s = await repo.statistics(session)
        return node_pb2.GetStatisticsResponse(
            count=s["count"],
            total=common_pb2.Resources(
                vcpus=s["vcpus"], memory_mb=s["memory_mb"], disk_gb=s["local_gb"]
            ),
            used=common_pb2.Resources(
                vcpus=s["vcpus_used"], memory_mb=s["memory_mb_used"], disk_gb=s["local_gb_used"]
            ),
            free_ram_mb=s["free_ram_mb"],
            free_disk_gb=s["free_disk_gb"],
            disk_available_least_gb=s["disk_available_least"],
            running_vms=s["running_vms"],
            current_workload=s["current_workload"],
        )

    async def instances_page(
        self, request: node_pb2.ListNodeInstancesRequest
    ) -> tuple[list[node_pb2.Instance], str]:
        """The instances of one node, of every node of a host, or of every node; only the
        requested uuids when `instance_uuids` is given, only a server group's members when
        `server_group` is, only those named `name` when it is."""
        has_node = request.HasField("node")
        if has_node and request.host:
            raise InvalidArgument.field("node", "name a node or a host, not both")
        uuids = _instance_uuids(request.instance_uuids)
        group = validation.name("server_group", request.server_group, required=False)
        name = validation.text("name", request.name)
        async with self._sessions() as session:
            node_ids: list[int] | None = None
            query: tuple[object, ...]
            if has_node:
                node = await self.find(session, request.node)
                node_ids, query = [node["id"]], ("instances", "node", node["uuid"])
            elif request.host:
                host = validation.name("host", request.host)
                node_ids = [row["id"] for row in await _nodes_of_known_host(session, host)]
                query = ("instances", "host", host)
            else:
                query = ("instances", "every node")
            query += (tuple(uuids), group, name)
            page = paging.read_page(request.page_size, request.page_token, query)
            rows = await repo.list_instances(
                session,
                node_ids=node_ids,
                uuids=uuids,
                server_group=group,
                name=name,
                after_id=page.after_id,
                limit=page.size + 1,
            )
        protos = [convert.instance(row) for row in rows[: page.size]]
        return protos, paging.next_token(list(rows), page, "id", query)

    async def host_usage(self, host: str) -> node_pb2.GetHostUsageResponse:
        """Nova's host-describe: totals, used now (with reserved), used max, per project."""
        host = validation.name("host", host)
        async with self._sessions() as session:
            nodes = await _nodes_of_known_host(session, host)
            projects = await repo.usage_by_project(session, [row["id"] for row in nodes])

        def summed(vcpus: str, memory: str, disk: str, rows: Sequence[Any]) -> common_pb2.Resources:
            return common_pb2.Resources(
                vcpus=sum(r[vcpus] for r in rows),
                memory_mb=sum(r[memory] for r in rows),
                disk_gb=sum(r[disk] for r in rows),
            )

        return node_pb2.GetHostUsageResponse(
            host=host,
            total=summed("vcpus", "memory_mb", "local_gb", nodes),
            used_now=summed("vcpus_used", "memory_mb_used", "local_gb_used", nodes),
            used_max=summed("vcpus", "memory_mb", "disk_gb", projects),
            projects=[
                node_pb2.ProjectUsage(
                    project_id=p["project_id"],
                    resources=common_pb2.Resources(
                        vcpus=p["vcpus"], memory_mb=p["memory_mb"], disk_gb=p["disk_gb"]
                    ),
                )
                for p in projects
            ],
            instance_count=sum(p["instances"] for p in projects),
        )

    async def delete(self, ref: node_pb2.ComputeNodeRef) -> None:
        async with self._sessions() as session, session.begin():
            row = await self.find(session, ref, for_update=True)
            auth.require_host(row["host"])  # an agent deletes only its own host's nodes
            await self._delete(session, [row])
        self._feed.poke()
        log.info(
            "compute node deleted",
            extra={"host": row["host"], "nodename": row["nodename"], "uuid": row["uuid"],
                   "by": auth.current_principal.get().name},
        )  # fmt: skip

    async def delete_host(self, host: str) -> int:
        """Delete every node of a host, refused while any of them has instances."""
        host = validation.name("host", host)
        async with self._sessions() as session, session.begin():
            rows = await repo.nodes_of_host(session, host)
            ids = [row["id"] for row in rows]
            count = await repo.instance_count(session, ids)
            if count:
                raise FailedPrecondition(
                    f"host {host} still has {count} instance(s) on its compute nodes; delete "
                    "or move them first (hypervisor-servers lists them)",
                    reason="HOST_HAS_INSTANCES",
                    metadata={"instances": str(count)},
                )
            await self._delete(session, rows)
        if rows:
            self._feed.poke()
            log.info("compute nodes of a host deleted", extra={"host": host, "nodes": len(rows)})
        return len(rows)

    async def _delete(self, session: AsyncSession, rows: Sequence[RowMapping]) -> None:
        now = self._clock()
        protos = await self.protos(session, rows)
        await repo.soft_delete_nodes(session, [row["id"] for row in rows], now)
        events = []
        for row, proto in zip(rows, protos, strict=True):
            proto.deleted_at.FromDatetime(now)
            events.append((DELETED, "node", row["uuid"], proto.SerializeToString()))
        if events:
            await repo.CHANGES.add_many(session, events, now)

    async def read_listing(self) -> tuple[int, list[node_pb2.ComputeNode]]:
        async with self._sessions() as session, session.begin():
            revision, _ = await repo.CHANGES.state(session, lock=True)
            return revision, await self.protos(session, await repo.list_nodes(session, limit=None))

    async def listing(self, batch: int = 0) -> AsyncIterator[node_pb2.WatchComputeNodesResponse]:
        """Every live node at one revision as ADDED (one per event, or `batch` per event),
        then SYNCED at that revision."""
        revision, protos = await db.uncancelled(self.read_listing())
        added = common_pb2.EVENT_TYPE_ADDED
        if batch:
            for chunk in changefeed.chunks(protos, batch):
                yield node_pb2.WatchComputeNodesResponse(type=added, revision=revision, nodes=chunk)
        else:
            for proto in protos:
                yield node_pb2.WatchComputeNodesResponse(type=added, revision=revision, node=proto)
        yield node_pb2.WatchComputeNodesResponse(
            type=common_pb2.EVENT_TYPE_SYNCED, revision=revision
        )


def _instance_uuids(values: Sequence[str]) -> list[str]:
    """The `instance_uuids` filter: at most MAX_INSTANCE_FILTER uuids, canonical, sorted,
    each once."""
    if len(values) > MAX_INSTANCE_FILTER:
        raise InvalidArgument.field(
            "instance_uuids", f"at most {MAX_INSTANCE_FILTER} uuids (got {len(values)})"
        )
    return sorted({validation.uuid(f"instance_uuids[{i}]", v) for i, v in enumerate(values)})


async def _nodes_of_known_host(session: AsyncSession, host: str) -> list[RowMapping]:
    nodes = await repo.nodes_of_host(session, host)
    if not nodes:
        raise NotFound(f"host {host} has no compute nodes", reason="HOST_NOT_FOUND")
    return nodes
