"""One INSERT or UPDATE for many rows, handed to the database driver's own executemany.

The snapshot and event writers store hundreds of rows per transaction. SQLAlchemy's
executemany builds and processes every parameter of every row in Python first (41 µs a row
of the 32-column node rewrite, measured on PostgreSQL); compiled once per dialect and given
to the driver as tuples, the same rows cost 22 µs, and asyncpg pipelines them. The columns'
bind processors (UtcDateTime, Boolean, …) still apply, so the driver gets exactly what
SQLAlchemy would have sent, inside the session's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.dml import UpdateBase

# The SQL, the position in a row of each of its parameters, and each one's processor.
_Compiled = tuple[str, list[int], list[Callable[[Any], Any] | None]]


class BatchStatement:
    """`statement` (an INSERT or UPDATE whose values are `bindparam(name)` for each of
    `names`) run for rows of values given in the order of `names`."""

    def __init__(self, statement: UpdateBase, names: Sequence[str]) -> None:
        self._statement = statement
        self._names = list(names)
        self._compiled: dict[tuple[Any, ...], _Compiled] = {}  # per kind of database

    async def execute(
        self, session: AsyncSession | AsyncConnection, rows: Iterable[Sequence[Any]]
    ) -> None:
        rows = list(rows)
        if not rows:
            return
        connection = await session.connection() if isinstance(session, AsyncSession) else session
        sql, order, processors = self._compile(connection.dialect)
        params = [
            tuple(
                row[i] if process is None else process(row[i])
                for i, process in zip(order, processors, strict=True)
            )
            for row in rows
        ]
        await connection.exec_driver_sql(sql, params)

    def _compile(self, dialect: Dialect) -> _Compiled:
        # What the SQL depends on (a process may hold engines of several backends: tests).
        kind = (dialect.name, dialect.driver, dialect.server_version_info)
        if kind not in self._compiled:
            query = self._statement.compile(dialect=dialect)
            positions = query.positiontup
            if positions is None:
                raise TypeError(f"{dialect.name}'s driver takes named parameters, not positions")
            unknown = [name for name in positions if name not in self._names]
            if unknown:
                # Columns left out get SQLAlchemy's defaults as parameters of their own.
                raise TypeError(f"parameters without a value in the rows: {unknown}")
            order = [self._names.index(name) for name in positions]
            processors: list[Callable[[Any], Any] | None] = [
                query.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                for name in positions
            ]
            self._compiled[kind] = (query.string, order, processors)
        return self._compiled[kind]
