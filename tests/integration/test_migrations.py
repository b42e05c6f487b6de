"""Each service's migrations walk from empty to head and back, and its models match them
(alembic check), on every database backend."""

from __future__ import annotations

import asyncio
import sys

import pytest
from alembic import command

from services.common import db
from services.node.app import MIGRATIONS as NODE_MIGRATIONS
from services.registry.app import MIGRATIONS as REGISTRY_MIGRATIONS

pytestmark = pytest.mark.parametrize(
    "migrations", [REGISTRY_MIGRATIONS, NODE_MIGRATIONS], ids=["registry", "node"]
)


async def test_migrations_walk_from_empty_to_head_and_match_the_models(database, migrations):
    config = db.alembic_config(migrations, database.url)
    await asyncio.to_thread(command.upgrade, config, "head")
    await asyncio.to_thread(command.check, config)  # raises when models and schema differ


async def test_migrations_walk_down_to_empty_and_up_again(database, migrations):
    config = db.alembic_config(migrations, database.url)
    await asyncio.to_thread(command.upgrade, config, "head")
    await asyncio.to_thread(command.downgrade, config, "base")
    await asyncio.to_thread(command.upgrade, config, "head")


async def test_processes_starting_together_on_a_new_database_migrate_it_once(database, migrations):
    """Replicas or BERTH_WORKERS processes starting at once: each runs the migrations, one
    creates the schema, the others wait for it and find it at head (none fails)."""
    # Processes, as replicas are (Alembic's context is one per process, not per thread).
    script = "import sys; from services.common import db; db.upgrade(sys.argv[1], sys.argv[2])"
    runs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, str(migrations), str(database.url),
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]  # fmt: skip
    errors = [(await run.communicate())[1].decode() for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, "\n".join(errors)
    config = db.alembic_config(migrations, database.url)
    await asyncio.to_thread(command.check, config)
