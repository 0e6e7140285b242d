"""caps: runtime caps per workspace, pipeline, capability or executor (concurrency, daily runtime
budget, phase timeout, queued runs), the runs a queue cap holds back, and the workspace each executor
served last (fair claims take workspaces in turn)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-09 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lakehouse.store.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('caps',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('scope_kind', sa.String(length=16), nullable=False),
    sa.Column('scope_value', sa.String(length=200), nullable=False),
    sa.Column('max_concurrent', sa.Integer(), nullable=True),
    sa.Column('runtime_s_per_day', sa.Float(), nullable=True),
    sa.Column('max_phase_timeout_s', sa.Float(), nullable=True),
    sa.Column('max_queued_runs', sa.Integer(), nullable=True),
    sa.Column('queue_mode', sa.String(length=16), nullable=False),
    sa.Column('updated_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'],
        name=op.f('fk_caps_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_caps')),
    sa.UniqueConstraint('workspace_id', 'scope_kind', 'scope_value', name='uq_caps_scope')
    )
    op.create_table('held_runs',
    sa.Column('run_id', sa.String(length=36), nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('cap_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('held_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_held_runs_run_id_runs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['cap_id'], ['caps.id'], name=op.f('fk_held_runs_cap_id_caps'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_held_runs'))
    )
    op.create_index('ix_held_runs_ws_held', 'held_runs', ['workspace_id', 'held_at'], unique=False)
    op.create_index('ix_phase_attempts_finished', 'phase_attempts', ['finished_at'], unique=False)
    op.add_column('executors', sa.Column('last_workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                                         nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('executors') as batch:
        batch.drop_column('last_workspace_id')
    op.drop_index('ix_phase_attempts_finished', table_name='phase_attempts')
    op.drop_index('ix_held_runs_ws_held', table_name='held_runs')
    op.drop_table('held_runs')
    op.drop_table('caps')
