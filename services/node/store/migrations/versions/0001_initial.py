"""Compute nodes, the instances they report, and the revision log watchers follow.

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
        "compute_nodes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("nodename", sa.String(length=255), nullable=False),
        sa.Column("hypervisor_type", sa.String(length=255), nullable=False),
        sa.Column("hypervisor_version", sa.String(length=255), nullable=False),
        sa.Column("cpu_info", sa.Text(), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.BigInteger(), nullable=False),
        sa.Column("local_gb", sa.BigInteger(), nullable=False),
        sa.Column("vcpus_used", sa.Integer(), nullable=False),
        sa.Column("memory_mb_used", sa.BigInteger(), nullable=False),
        sa.Column("local_gb_used", sa.BigInteger(), nullable=False),
        sa.Column("free_ram_mb", sa.BigInteger(), nullable=False),
        sa.Column("free_disk_gb", sa.BigInteger(), nullable=False),
        sa.Column("disk_available_least", sa.BigInteger(), nullable=False),
        sa.Column("running_vms", sa.Integer(), nullable=False),
        sa.Column("current_workload", sa.Integer(), nullable=False),
        sa.Column("io_ops", sa.Integer(), nullable=False),
        sa.Column("host_ip", sa.String(length=64), nullable=False),
        sa.Column("cpu_allocation_ratio", sa.Float(), nullable=False),
        sa.Column("ram_allocation_ratio", sa.Float(), nullable=False),
        sa.Column("disk_allocation_ratio", sa.Float(), nullable=False),
        sa.Column("reserved_host_memory_mb", sa.BigInteger(), nullable=False),
        sa.Column("reserved_host_disk_mb", sa.BigInteger(), nullable=False),
        sa.Column("reserved_host_cpus", sa.Integer(), nullable=False),
        sa.Column("details", sa.LargeBinary(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("boot_epoch", _DATETIME, nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("reported_at", _DATETIME, nullable=False),
        sa.Column("created_at", _DATETIME, nullable=False),
        sa.Column("updated_at", _DATETIME, nullable=True),
        sa.Column("deleted_at", _DATETIME, nullable=True),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compute_nodes")),
        sa.UniqueConstraint(
            "host", "nodename", "deleted", name=op.f("uq_compute_nodes_host_nodename_deleted")
        ),
        sa.UniqueConstraint("uuid", name=op.f("uq_compute_nodes_uuid")),
    )
    with op.batch_alter_table("compute_nodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_compute_nodes_host"), ["host"], unique=False)

    op.create_table(
        "node_events",
        sa.Column("revision", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("type", sa.SmallInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("object_uuid", sa.String(length=36), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_node_events")),
    )
    op.create_table(
        "node_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("compacted", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_revision")),
    )
    op.bulk_insert(
        sa.table("node_revision", sa.column("id"), sa.column("revision"), sa.column("compacted")),
        [{"id": 1, "revision": 0, "compacted": 0}],
    )
    op.create_table(
        "node_instances",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.BigInteger(), nullable=False),
        sa.Column("disk_gb", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("claim_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["compute_nodes.id"],
            name=op.f("fk_node_instances_node_id_compute_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_instances")),
        sa.UniqueConstraint("node_id", "uuid", name=op.f("uq_node_instances_node_id_uuid")),
    )
    with op.batch_alter_table("node_instances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_node_instances_node_id"), ["node_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_node_instances_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_node_instances_uuid"), ["uuid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("node_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_node_instances_uuid"))
        batch_op.drop_index(batch_op.f("ix_node_instances_project_id"))
        batch_op.drop_index(batch_op.f("ix_node_instances_node_id"))

    op.drop_table("node_instances")
    op.drop_table("node_revision")
    op.drop_table("node_events")
    with op.batch_alter_table("compute_nodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_compute_nodes_host"))

    op.drop_table("compute_nodes")
