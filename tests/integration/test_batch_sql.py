"""BatchStatement hands rows to the driver's own executemany: on every backend they are
stored exactly as SQLAlchemy's executemany stores them (processors applied: aware UTC
datetimes, booleans, bytes, NULLs), inside the caller's transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.common import db
from services.common.batch_sql import BatchStatement
from services.node.app import MIGRATIONS
from services.node.store import repository as repo

NODES = repo.NODES
NOW = datetime(2026, 12, 5, 20, 1, 2, 345678, tzinfo=UTC)


# Every column but the id, at its default: a BatchStatement gives every column a value.
_DEFAULTS = {
    column.name: column.default.arg if column.default is not None else None
    for column in NODES.c
    if column.name != "id"
}


def _node(i: int) -> dict:
    return _DEFAULTS | {
        "uuid": f"00000000-0000-0000-0000-{i:012d}",
        "host": f"host-{i}",
        "nodename": f"node-{i}",
        "cpu_info": "{'%s': 1}",  # a % in a value, never taken for a placeholder
        "whole_machine": bool(i % 2),
        "details": bytes([i, 0, 255]),
        "cpu_allocation_ratio": 1.5 + i,
        # An offset that is not UTC: the column's processor stores it as UTC.
        "boot_epoch": (NOW + timedelta(seconds=i)).astimezone(timezone(timedelta(hours=5))),
        "reported_at": NOW,
        "created_at": NOW,
        "updated_at": None if i % 2 else NOW,
        "generation": 1,
        "deleted": 0,
    }


COLUMNS = list(_node(0))


async def _stored(sessions) -> list[dict]:
    async with sessions() as session:
        query = select(*(NODES.c[name] for name in COLUMNS)).order_by(NODES.c.uuid)
        return [dict(row) for row in (await session.execute(query)).mappings()]


@pytest.fixture
async def sessions(database):
    await _upgrade(database.url)
    engine = db.create_engine(database.url)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def _upgrade(url: str) -> None:
    import asyncio

    await asyncio.to_thread(db.upgrade, MIGRATIONS, url)


async def test_rows_are_stored_as_sqlalchemys_executemany_stores_them(sessions):
    rows = [_node(i) for i in range(6)]
    statement = BatchStatement(
        insert(NODES).values({name: bindparam(name) for name in COLUMNS}), COLUMNS
    )
    async with sessions() as session, session.begin():
        await statement.execute(session, [tuple(row[name] for name in COLUMNS) for row in rows[:3]])
        await session.execute(insert(NODES), rows[3:])
    stored = await _stored(sessions)
    ours, theirs = stored[:3], stored[3:]
    assert [s["boot_epoch"] for s in stored] == [r["boot_epoch"] for r in rows]
    assert [s["boot_epoch"].utcoffset() for s in stored] == [timedelta(0)] * 6
    for mine, row in zip(ours + theirs, rows, strict=True):
        assert mine == {**row, "boot_epoch": row["boot_epoch"].astimezone(UTC)}


async def test_an_update_by_key_with_its_parameters_in_any_order(sessions):
    async with sessions() as session, session.begin():
        await session.execute(insert(NODES), [_node(i) for i in range(3)])
    statement = BatchStatement(
        update(NODES)
        .where(NODES.c.uuid == bindparam("b_uuid"))
        .values(cpu_info=bindparam("b_info"), whole_machine=bindparam("b_whole")),
        ["b_uuid", "b_info", "b_whole"],  # the WHERE's parameter comes last in the SQL
    )
    async with sessions() as session, session.begin():
        await statement.execute(session, [(_node(i)["uuid"], f"cpu {i}", True) for i in range(2)])
    stored = await _stored(sessions)
    assert [(s["cpu_info"], s["whole_machine"]) for s in stored] == [
        ("cpu 0", True),
        ("cpu 1", True),
        (_node(2)["cpu_info"], False),
    ]


async def test_a_column_left_without_a_value_is_refused_before_anything_is_sent(sessions):
    partial = [name for name in COLUMNS if name != "hypervisor_type"]
    statement = BatchStatement(
        insert(NODES).values({name: bindparam(name) for name in partial}), partial
    )
    async with sessions() as session, session.begin():
        with pytest.raises(TypeError, match="hypervisor_type"):
            await statement.execute(session, [tuple(_node(1)[name] for name in partial)])
    assert await _stored(sessions) == []


async def test_the_rows_roll_back_with_the_callers_transaction(sessions):
    statement = BatchStatement(
        insert(NODES).values({name: bindparam(name) for name in COLUMNS}), COLUMNS
    )
    with pytest.raises(RuntimeError):
        async with sessions() as session, session.begin():
            await statement.execute(session, [tuple(_node(1)[name] for name in COLUMNS)])
            raise RuntimeError("the batch fails after the rows were sent")
    assert await _stored(sessions) == []
