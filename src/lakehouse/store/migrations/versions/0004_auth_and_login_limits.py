"""auth and login limits (auth helper)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 11:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lakehouse.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_throttles",
        sa.Column("user_name", sa.String(length=100), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failure_at", lakehouse.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_failure_at", lakehouse.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("locked_until", lakehouse.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("user_name", "address", name=op.f("pk_login_throttles")),
    )


def downgrade() -> None:
    op.drop_table("login_throttles")
