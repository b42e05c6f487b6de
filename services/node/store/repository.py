"""Every query the node service runs. Callers pass the session; this module owns the SQL.

Rows come back as mappings (Core, not ORM objects): snapshots are written in batches of
hundreds, where identity-mapped objects would cost more than they give.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.engine import CursorResult, RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.batch_sql import BatchStatement
from services.common.changefeed import ChangeLog
from services.node.store.models import ComputeNode, Event, NodeInstance, RevisionCounter

CHANGES = ChangeLog(RevisionCounter, Event)

# The mapped classes' Tables (typed as such: `__table__` is declared a FromClause).
NODES = cast(Table, ComputeNode.__table__)
INSTANCES = cast(Table, NodeInstance.__table__)
LIVE = NODES.c.deleted == 0

# --- one node ---------------------------------------------------------------------------


async def node_by_uuid(
    session: AsyncSession, uuid: str, *, with_deleted: bool = False, for_update: bool = False
) -> RowMapping | None:
    query = select(NODES).where(NODES.c.uuid == uuid)
    if not with_deleted:
        query = query.where(LIVE)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).mappings().one_or_none()


async def node_by_key(
    session: AsyncSession, host: str, nodename: str, *, for_update: bool = False
) -> RowMapping | None:
    query = select(NODES).where(NODES.c.host == host, NODES.c.nodename == nodename, LIVE)
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).mappings().one_or_none()


async def insert_node(session: AsyncSession, values: Mapping[str, Any]) -> int:
    result = cast(CursorResult[Any], await session.execute(insert(NODES).values(**values)))
    key = result.inserted_primary_key
    assert key is not None  # an INSERT of one row always has one
    return int(key[0])


async def insert_nodes(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Create many nodes in one statement (a multi-row INSERT ... RETURNING on every
    backend); their ids, in the order of `rows`."""
    statement = insert(NODES).returning(NODES.c.id, sort_by_parameter_order=True)
    return [int(row.id) for row in await session.execute(statement, list(rows))]


async def update_node(session: AsyncSession, node_id: int, values: Mapping[str, Any]) -> None:
    await session.execute(update(NODES).where(NODES.c.id == node_id).values(**values))


# --- many nodes -------------------------------------------------------------------------


async def nodes_by_keys(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], RowMapping]:
    """Live nodes by (host, nodename), locked in id order so concurrent batches cannot
    deadlock each other."""
    query = (
        select(NODES)
        .where(LIVE, tuple_(NODES.c.host, NODES.c.nodename).in_(keys))
        .order_by(NODES.c.id)
        .with_for_update()
    )
    rows = (await session.execute(query)).mappings().all()
    return {(row["host"], row["nodename"]): row for row in rows}


async def nodes_by_uuids(session: AsyncSession, uuids: Sequence[str]) -> dict[str, RowMapping]:
    """Nodes by uuid, deleted ones too, locked in id order."""
    if not uuids:
        return {}
    query = select(NODES).where(NODES.c.uuid.in_(uuids)).order_by(NODES.c.id).with_for_update()
    return {row["uuid"]: row for row in (await session.execute(query)).mappings().all()}


# Columns every changed snapshot rewrites: one statement shape, so one executemany.
_SNAPSHOT_COLUMNS = (
    "hypervisor_type", "hypervisor_version", "cpu_info", "vcpus", "memory_mb", "local_gb",
    "vcpus_used", "memory_mb_used", "local_gb_used", "free_ram_mb", "free_disk_gb",
    "disk_available_least", "running_vms", "current_workload", "io_ops", "host_ip",
    "cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio",
    "reserved_host_memory_mb", "reserved_host_disk_mb", "reserved_host_cpus",
    "resource_class", "whole_machine", "details", "boot_epoch", "sequence", "digest",
    "generation", "reported_at", "updated_at",
)  # fmt: skip


_REWRITE = BatchStatement(
    update(NODES)
    .where(NODES.c.id == bindparam("b_id"))
    .values({name: bindparam(f"b_{name}") for name in _SNAPSHOT_COLUMNS}),
    ["b_id", *(f"b_{name}" for name in _SNAPSHOT_COLUMNS)],
)


async def rewrite_nodes(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Store changed snapshots: every snapshot column of each row, by id."""
    await _REWRITE.execute(
        session, [(row["id"], *(row[name] for name in _SNAPSHOT_COLUMNS)) for row in rows]
    )


_TOUCH = BatchStatement(
    update(NODES)
    .where(NODES.c.id == bindparam("b_id"))
    .values(
        boot_epoch=bindparam("b_epoch", type_=NODES.c.boot_epoch.type),
        sequence=bindparam("b_sequence", type_=NODES.c.sequence.type),
        reported_at=bindparam("b_now", type_=NODES.c.reported_at.type),
    ),
    ["b_id", "b_epoch", "b_sequence", "b_now"],
)


async def touch_nodes(
    session: AsyncSession, touches: Sequence[tuple[int, datetime, int, datetime]]
) -> None:
    """Record (id, boot epoch, sequence, now) of unchanged snapshots: no generation, no event."""
    await _TOUCH.execute(session, touches)


async def list_nodes(
    session: AsyncSession,
    *,
    host: str = "",
    nodename_contains: str = "",
    after_id: int | None = None,
    limit: int | None = 100,
) -> Sequence[RowMapping]:
    """Live nodes in id order; `limit=None` for all of them."""
    query = select(NODES).where(LIVE).order_by(NODES.c.id).limit(limit)
    if host:
        query = query.where(NODES.c.host == host)
    if nodename_contains:
        escaped = nodename_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(NODES.c.nodename.like(f"%{escaped}%", escape="\\"))
    if after_id is not None:
        query = query.where(NODES.c.id > after_id)
    return (await session.execute(query)).mappings().all()


async def nodes_of_host(session: AsyncSession, host: str) -> list[RowMapping]:
    return list(await list_nodes(session, host=host, limit=None))


_SUMMED = (
    "vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
    "free_ram_mb", "free_disk_gb", "disk_available_least", "running_vms", "current_workload",
)  # fmt: skip


async def statistics(session: AsyncSession) -> dict[str, int]:
    """Count and sums over every live node (hypervisor-stats)."""
    sums = (func.coalesce(func.sum(NODES.c[name]), 0).label(name) for name in _SUMMED)
    query = select(func.count().label("count"), *sums).where(LIVE)
    row = (await session.execute(query)).mappings().one()
    return {name: int(value) for name, value in row.items()}  # PostgreSQL sums are Decimal


async def soft_delete_nodes(session: AsyncSession, node_ids: Sequence[int], now: datetime) -> None:
    """Delete nodes (keeping their rows) and forget their instances."""
    if not node_ids:
        return
    await session.execute(delete(INSTANCES).where(INSTANCES.c.node_id.in_(node_ids)))
    await session.execute(
        update(NODES)
        .where(NODES.c.id.in_(node_ids))
        .values(deleted=NODES.c.id, deleted_at=now, updated_at=now)
    )


# --- instances --------------------------------------------------------------------------


# Every column of an instance's row but its id.
_INSTANCE_COLUMNS = [column.name for column in INSTANCES.c if column.name != "id"]
_INSERT_INSTANCES = BatchStatement(
    insert(INSTANCES).values({name: bindparam(name) for name in _INSTANCE_COLUMNS}),
    _INSTANCE_COLUMNS,
)


async def replace_instances(
    session: AsyncSession, node_ids: Sequence[int], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Make `rows` the instances of `node_ids` (a changed snapshot lists all of them)."""
    if node_ids:
        await session.execute(delete(INSTANCES).where(INSTANCES.c.node_id.in_(node_ids)))
    await _INSERT_INSTANCES.execute(
        session, [tuple(row[name] for name in _INSTANCE_COLUMNS) for row in rows]
    )


async def instance_keys(
    session: AsyncSession, node_ids: Iterable[int]
) -> dict[int, list[tuple[str, str]]]:
    """(uuid, claim id) of every instance on these nodes, by node: one query per thousand
    nodes (drivers cap bind parameters, asyncpg at 32767)."""
    ids = list(node_ids)
    result: dict[int, list[tuple[str, str]]] = defaultdict(list)
    c = INSTANCES.c
    for start in range(0, len(ids), 1000):
        query = select(c.node_id, c.uuid, c.claim_id).where(
            c.node_id.in_(ids[start : start + 1000])
        )
        for node_id, uuid, claim in (await session.execute(query)).all():
            result[node_id].append((uuid, claim))
    return result


async def list_instances(
    session: AsyncSession,
    *,
    node_ids: Sequence[int] | None = None,
    uuids: Sequence[str] = (),
    server_group: str = "",
    name: str = "",
    after_id: int | None = None,
    limit: int = 100,
) -> Sequence[RowMapping]:
    """Instances of live nodes in id order: of `node_ids` (None: of every node), only
    `uuids` and only members of `server_group` if given; each row also holds its node's
    `node_uuid`, `host` and `nodename`."""
    query = (
        select(INSTANCES, NODES.c.uuid.label("node_uuid"), NODES.c.host, NODES.c.nodename)
        .join_from(INSTANCES, NODES, NODES.c.id == INSTANCES.c.node_id)
        .where(LIVE)
        .order_by(INSTANCES.c.id)
        .limit(limit)
    )
    if node_ids is not None:
        query = query.where(INSTANCES.c.node_id.in_(node_ids))
    if uuids:
        query = query.where(INSTANCES.c.uuid.in_(uuids))
    if server_group:
        query = query.where(INSTANCES.c.server_group == server_group)
    if name:
        query = query.where(INSTANCES.c.name == name)
    if after_id is not None:
        query = query.where(INSTANCES.c.id > after_id)
    return (await session.execute(query)).mappings().all()


async def instance_count(session: AsyncSession, node_ids: Sequence[int]) -> int:
    if not node_ids:
        return 0
    query = select(func.count()).where(INSTANCES.c.node_id.in_(node_ids))
    return int((await session.execute(query)).scalar_one())


async def usage_by_project(session: AsyncSession, node_ids: Sequence[int]) -> list[dict[str, Any]]:
    """{project_id, instances, vcpus, memory_mb, disk_gb} on these nodes, by project."""
    c = INSTANCES.c
    query = (
        select(
            c.project_id,
            func.count().label("instances"),
            func.sum(c.vcpus).label("vcpus"),
            func.sum(c.memory_mb).label("memory_mb"),
            func.sum(c.disk_gb).label("disk_gb"),
        )
        .where(c.node_id.in_(node_ids))
        .group_by(c.project_id)
        .order_by(c.project_id)
    )
    rows = (await session.execute(query)).mappings().all()
    return [{k: v if k == "project_id" else int(v) for k, v in row.items()} for row in rows]
