"""Alembic environment of the node service's tables."""

from services.common.migrate_env import run_migrations
from services.node.store.models import Base

run_migrations(Base.metadata, version_table="alembic_version_node")
