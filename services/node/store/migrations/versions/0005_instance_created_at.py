"""An instance keeps when its agent accepted the build (Nova's `created`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

# As 0001: microseconds on MariaDB too.
_DATETIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("node_instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_at", _DATETIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("node_instances", schema=None) as batch_op:
        batch_op.drop_column("created_at")
