"""The body of every service's Alembic env.py: async engine, batch mode for SQLite."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

from alembic import context
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from services.common.db import create_engine


def run_migrations(target_metadata: MetaData, version_table: str) -> None:
    config = context.config
    url = config.attributes["url"]
    options: dict[str, Any] = {
        "target_metadata": target_metadata,
        "version_table": version_table,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        "render_as_batch": True,
        "compare_type": True,
    }
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(connection: Connection) -> None:
        _one_at_a_time(connection, version_table)
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()

    connection = config.attributes.get("connection")
    if connection is not None:  # a caller (a test) handed us its connection
        migrate(connection)
        return

    async def online() -> None:
        engine = create_engine(url, timeout_s=None)  # a migration may run one long statement
        async with engine.begin() as conn:
            await conn.run_sync(migrate)
        await engine.dispose()

    asyncio.run(online())


def _one_at_a_time(connection: Connection, name: str) -> None:
    """Replicas and BERTH_WORKERS processes starting together on a new database would each
    create the tables, and all but one fail ("relation already exists"). A lock held to
    the end of this transaction lets one migrate; the others then find the schema at head.
    (SQLite needs none: the migration's transaction begins IMMEDIATE, a write lock.)"""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        key = zlib.crc32(name.encode())
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif dialect in ("mysql", "mariadb"):
        # A session lock (MySQL has no transaction-scoped one): freed with the connection,
        # which the migration closes when it ends.
        connection.execute(text("SELECT GET_LOCK(:name, 600)"), {"name": f"berth:{name}"})
