"""The body of every service's Alembic env.py: async engine, batch mode for SQLite."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import MetaData
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
