"""run scores indexed by (workspace, score, run id): the runs list sorted by score pages through
ties (most runs score 100) by a keyset on (score, run_id) within one index range per workspace; the
index replaces (workspace, score), which it covers

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 18:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_run_scores_ws_score_run', 'run_scores', ['workspace_id', 'score', 'run_id'], unique=False)
    op.drop_index('ix_run_scores_ws_score', table_name='run_scores')


def downgrade() -> None:
    op.create_index('ix_run_scores_ws_score', 'run_scores', ['workspace_id', 'score'], unique=False)
    op.drop_index('ix_run_scores_ws_score_run', table_name='run_scores')
