"""job promotion: workspace gates per environment, promotion requests and decisions

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lakehouse.store.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, lakehouse.store.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "promotion_gates",
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("environment", sa.String(length=16), nullable=False),
        sa.Column("min_runs", sa.Integer(), nullable=False),
        sa.Column("require_dq", sa.Boolean(), nullable=False),
        sa.Column("require_approval", sa.Boolean(), nullable=False),
        sa.Column("approver_role", sa.String(length=16), nullable=False),
        sa.Column("approver_not_author", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        _ts("updated_at", False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"],
                                name=op.f("fk_promotion_gates_workspace_id_workspaces"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("workspace_id", "environment", name=op.f("pk_promotion_gates")),
    )
    op.create_table(
        "job_promotions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("environment", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("gates", lakehouse.store.types.JSONDoc(), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        _ts("requested_at", False),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        _ts("decided_at", True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_promotions_job_id_jobs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_promotions")),
    )
    with op.batch_alter_table("job_promotions", schema=None) as batch_op:
        batch_op.create_index("ix_job_promotions_job_env", ["job_id", "environment", "requested_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_promotions", schema=None) as batch_op:
        batch_op.drop_index("ix_job_promotions_job_env")
    op.drop_table("job_promotions")
    op.drop_table("promotion_gates")
