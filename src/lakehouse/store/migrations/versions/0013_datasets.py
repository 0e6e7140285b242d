"""datasets: the dataset registry (logical name, owner, description, tags, location per table)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lakehouse.store.types

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('datasets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('environment', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('owner', sa.String(length=100), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('tags', lakehouse.store.types.JSONDoc(), nullable=False),
    sa.Column('location', sa.String(length=2000), nullable=False),
    sa.Column('format', sa.String(length=32), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_run_id', sa.String(length=36), nullable=True),
    sa.Column('snapshot_id', sa.BigInteger(), nullable=True),
    sa.Column('rows', sa.BigInteger(), nullable=True),
    sa.Column('published_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'],
        name=op.f('fk_datasets_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint('workspace_id', 'environment', 'name', name='uq_datasets_key')
    )
    op.create_index('ix_datasets_owner', 'datasets', ['workspace_id', 'owner'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_datasets_owner', table_name='datasets')
    op.drop_table('datasets')
