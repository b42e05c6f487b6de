"""An instance keeps the name its user gave it and its flavor's name.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("node_instances", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("name", sa.String(length=255), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("flavor_name", sa.String(length=255), nullable=False, server_default="")
        )
        batch_op.create_index(batch_op.f("ix_node_instances_name"), ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("node_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_node_instances_name"))
        batch_op.drop_column("flavor_name")
        batch_op.drop_column("name")
