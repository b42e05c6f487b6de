"""A node states its resource class and whether one instance takes it whole (bare metal);
an instance keeps its flavor's extra specs (the class it asked for).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("compute_nodes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("resource_class", sa.String(length=255), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("whole_machine", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("node_instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flavor_extra_specs", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("node_instances", schema=None) as batch_op:
        batch_op.drop_column("flavor_extra_specs")
    with op.batch_alter_table("compute_nodes", schema=None) as batch_op:
        batch_op.drop_column("whole_machine")
        batch_op.drop_column("resource_class")
