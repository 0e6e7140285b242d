"""jobs, versions, schedules, backfills (jobs helper)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 11:20:00
"""

from __future__ import annotations

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
