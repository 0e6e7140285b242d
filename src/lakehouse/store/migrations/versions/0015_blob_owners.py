"""blob owners: which workspaces may reference a content-addressed blob (uploaded for one of their runs,
or a query result produced there), and which accounts uploaded a blob without naming a run; backfilled
from the artifacts (their run's workspace) and the live query results of today's blobs

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-10 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lakehouse.store.types

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blob_owners',
    sa.Column('workspace_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('first_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('run_id', sa.String(length=36), nullable=True),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'],
        name=op.f('fk_blob_owners_workspace_id_workspaces'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('workspace_id', 'sha256', name=op.f('pk_blob_owners'))
    )
    op.create_index('ix_blob_owners_sha256', 'blob_owners', ['sha256'], unique=False)
    op.create_table('blob_uploads',
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('uploaded_at', lakehouse.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'],
        name=op.f('fk_blob_uploads_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'sha256', name=op.f('pk_blob_uploads'))
    )
    op.create_index('ix_blob_uploads_sha256', 'blob_uploads', ['sha256'], unique=False)
    # every stored blob an artifact names is its run's workspace's, first at that workspace's first artifact
    op.execute("""
        INSERT INTO blob_owners (workspace_id, sha256, first_at, run_id)
        SELECT r.workspace_id, a.sha256, a.created_at, a.run_id
        FROM artifacts a JOIN runs r ON r.id = a.run_id
        WHERE EXISTS (SELECT 1 FROM blobs b WHERE b.sha256 = a.sha256)
          AND a.id = (SELECT MIN(a2.id) FROM artifacts a2 JOIN runs r2 ON r2.id = a2.run_id
                      WHERE a2.sha256 = a.sha256 AND r2.workspace_id = r.workspace_id)
    """)
    # a live stored query result is its workspace's
    op.execute("""
        INSERT INTO blob_owners (workspace_id, sha256, first_at, run_id)
        SELECT q.workspace_id, q.result_sha256, MIN(q.started_at), NULL
        FROM query_history q
        WHERE q.result_sha256 IS NOT NULL AND q.result_expired_at IS NULL
          AND EXISTS (SELECT 1 FROM blobs b WHERE b.sha256 = q.result_sha256)
          AND NOT EXISTS (SELECT 1 FROM blob_owners o
                          WHERE o.workspace_id = q.workspace_id AND o.sha256 = q.result_sha256)
        GROUP BY q.workspace_id, q.result_sha256
    """)


def downgrade() -> None:
    op.drop_index('ix_blob_uploads_sha256', table_name='blob_uploads')
    op.drop_table('blob_uploads')
    op.drop_index('ix_blob_owners_sha256', table_name='blob_owners')
    op.drop_table('blob_owners')
