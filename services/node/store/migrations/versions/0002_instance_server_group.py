"""Instances remember their server group and its policy, so the scheduler can rebuild group
membership after losing its cache.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("node_instances", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("server_group", sa.String(length=255), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("group_policy", sa.SmallInteger(), nullable=False, server_default="0")
        )
        batch_op.create_index(
            batch_op.f("ix_node_instances_server_group"), ["server_group"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("node_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_node_instances_server_group"))
        batch_op.drop_column("group_policy")
        batch_op.drop_column("server_group")
