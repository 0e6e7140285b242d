"""audit log entries are appended unsealed and chained by a sealer (no global lock on writes)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 11:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True))
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=True)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=True)
    # entries written before this revision were chained in id order: that order is their seq
    op.execute("UPDATE audit_log SET seq = id")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ux_audit_log_seq", ["seq"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ux_audit_log_seq")
        batch_op.drop_column("seq")
