"""Services, aggregates and the revision log watchers follow.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# Microsecond precision on MySQL/MariaDB too (their DATETIME keeps whole seconds by default).
_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aggregates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", _DATETIME, nullable=False),
        sa.Column("updated_at", _DATETIME, nullable=True),
        sa.Column("deleted_at", _DATETIME, nullable=True),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aggregates")),
        sa.UniqueConstraint("name", "deleted", name=op.f("uq_aggregates_name_deleted")),
        sa.UniqueConstraint("uuid", name=op.f("uq_aggregates_uuid")),
    )
    op.create_table(
        "registry_events",
        sa.Column("revision", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("type", sa.SmallInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("object_uuid", sa.String(length=36), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_registry_events")),
    )
    op.create_table(
        "registry_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("compacted", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_revision")),
    )
    op.bulk_insert(
        sa.table(
            "registry_revision", sa.column("id"), sa.column("revision"), sa.column("compacted")
        ),
        [{"id": 1, "revision": 0, "compacted": 0}],
    )
    op.create_table(
        "services",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("binary", sa.String(length=255), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("report_count", sa.BigInteger(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=255), nullable=True),
        sa.Column("forced_down", sa.Boolean(), nullable=False),
        sa.Column("last_seen_up", _DATETIME, nullable=True),
        sa.Column("reported_up", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(length=255), nullable=False),
        sa.Column("build_version", sa.String(length=64), nullable=False),
        sa.Column("created_at", _DATETIME, nullable=False),
        sa.Column("updated_at", _DATETIME, nullable=True),
        sa.Column("deleted_at", _DATETIME, nullable=True),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
        sa.UniqueConstraint(
            "host", "binary", "deleted", name=op.f("uq_services_host_binary_deleted")
        ),
        sa.UniqueConstraint("uuid", name=op.f("uq_services_uuid")),
    )
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_services_last_seen_up"), ["last_seen_up"], unique=False
        )

    op.create_table(
        "aggregate_hosts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("aggregate_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["aggregate_id"],
            ["aggregates.id"],
            name=op.f("fk_aggregate_hosts_aggregate_id_aggregates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aggregate_hosts")),
        sa.UniqueConstraint(
            "aggregate_id", "host", name=op.f("uq_aggregate_hosts_aggregate_id_host")
        ),
    )
    with op.batch_alter_table("aggregate_hosts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_aggregate_hosts_aggregate_id"), ["aggregate_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_aggregate_hosts_host"), ["host"], unique=False)

    op.create_table(
        "aggregate_metadata",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("aggregate_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["aggregate_id"],
            ["aggregates.id"],
            name=op.f("fk_aggregate_metadata_aggregate_id_aggregates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aggregate_metadata")),
        sa.UniqueConstraint(
            "aggregate_id", "key", name=op.f("uq_aggregate_metadata_aggregate_id_key")
        ),
    )
    with op.batch_alter_table("aggregate_metadata", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_aggregate_metadata_aggregate_id"), ["aggregate_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("aggregate_metadata", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_aggregate_metadata_aggregate_id"))

    op.drop_table("aggregate_metadata")
    with op.batch_alter_table("aggregate_hosts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_aggregate_hosts_host"))
        batch_op.drop_index(batch_op.f("ix_aggregate_hosts_aggregate_id"))

    op.drop_table("aggregate_hosts")
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_services_last_seen_up"))

    op.drop_table("services")
    op.drop_table("registry_revision")
    op.drop_table("registry_events")
    op.drop_table("aggregates")
