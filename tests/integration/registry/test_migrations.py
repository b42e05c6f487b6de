"""Migrations walk from empty to head, and the models match them (alembic check)."""

from __future__ import annotations

import asyncio

from alembic import command

from services.common import db
from services.registry.app import MIGRATIONS


async def test_migrations_walk_from_empty_to_head_and_match_the_models(database):
    config = db.alembic_config(MIGRATIONS, database.url)
    await asyncio.to_thread(command.upgrade, config, "head")
    await asyncio.to_thread(command.check, config)  # raises when models and schema differ


async def test_migrations_walk_down_to_empty_and_up_again(database):
    config = db.alembic_config(MIGRATIONS, database.url)
    await asyncio.to_thread(command.upgrade, config, "head")
    await asyncio.to_thread(command.downgrade, config, "base")
    await asyncio.to_thread(command.upgrade, config, "head")
