"""Maintenance mode: hosts in maintenance (with the lease of the registry conducting their
moves) and the move of each of their instances.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# Microsecond precision on MySQL/MariaDB too (their DATETIME keeps whole seconds by default).
_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "host_maintenance",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("moving", sa.Boolean(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_expires_at", _DATETIME, nullable=True),
        sa.Column("started_at", _DATETIME, nullable=False),
        sa.Column("updated_at", _DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_host_maintenance")),
        sa.UniqueConstraint("host", name=op.f("uq_host_maintenance_host")),
    )
    op.create_table(
        "instance_moves",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("destination_host", sa.String(length=255), nullable=False),
        sa.Column("destination_nodename", sa.String(length=255), nullable=False),
        sa.Column("claim_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=1024), nullable=False),
        sa.Column("created_at", _DATETIME, nullable=False),
        sa.Column("updated_at", _DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_moves")),
        sa.UniqueConstraint(
            "host", "instance_uuid", name=op.f("uq_instance_moves_host_instance_uuid")
        ),
    )


def downgrade() -> None:
    op.drop_table("instance_moves")
    op.drop_table("host_maintenance")
