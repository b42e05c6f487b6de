"""Alembic environment of the registry's tables."""

from services.common.migrate_env import run_migrations
from services.registry.store.models import Base

run_migrations(Base.metadata, version_table="alembic_version_registry")
