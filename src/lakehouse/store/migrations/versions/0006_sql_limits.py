"""sql limits (sql helper): the size of a query's stored result and when it expired

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 11:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lakehouse.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("query_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("result_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("result_expired_at", lakehouse.store.types.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.create_index("ix_query_history_result_sha256", ["result_sha256"], unique=False)
    op.execute("UPDATE query_history SET result_bytes = (SELECT size_bytes FROM blobs "
               "WHERE blobs.sha256 = query_history.result_sha256) WHERE result_sha256 IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("query_history", schema=None) as batch_op:
        batch_op.drop_index("ix_query_history_result_sha256")
        batch_op.drop_column("result_expired_at")
        batch_op.drop_column("result_bytes")
