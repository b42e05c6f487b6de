"""Each service's migrations walk from empty to head and back, and its models match them
(alembic check), on every database backend."""

from __future__ import annotations

import asyncio

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
