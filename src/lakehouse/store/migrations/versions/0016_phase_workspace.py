"""phases carry their run's workspace: a claim looks at each workspace's oldest runnable phases
through one index probe per workspace (ix_phases_ws_claimable) instead of ranking every queued
phase; backfilled from runs

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('phases') as batch:
        batch.add_column(sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                   nullable=True))
    op.execute("UPDATE phases SET workspace_id = (SELECT r.workspace_id FROM runs r WHERE r.id = phases.run_id)")
    op.create_index('ix_phases_ws_claimable', 'phases', ['workspace_id', 'status', 'available_at', 'id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_phases_ws_claimable', table_name='phases')
    with op.batch_alter_table('phases') as batch:
        batch.drop_column('workspace_id')
