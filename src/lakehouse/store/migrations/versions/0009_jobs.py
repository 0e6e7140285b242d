"""jobs, versions, schedules, backfills (jobs helper)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 11:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import lakehouse.store.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, lakehouse.store.types.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        _ts("next_fire_at", True),
        _ts("last_tick_at", True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        _ts("created_at", False),
        _ts("updated_at", False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], name=op.f("fk_jobs_workspace_id_workspaces")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("workspace_id", "name", name="uq_jobs_workspace_name"),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_next_fire_at", ["next_fire_at"], unique=False)

    op.create_table(
        "job_versions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("definition", lakehouse.store.types.JSONDoc(), nullable=False),
        sa.Column("canonical", sa.Text(), nullable=False),
        sa.Column("git_sha", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        _ts("created_at", False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_versions_job_id_jobs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_versions")),
        sa.UniqueConstraint("job_id", "version", name="uq_job_versions_job_version"),
    )

    op.create_table(
        "job_triggers",
        sa.Column("job_id", ID, nullable=False),
        sa.Column("upstream", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_triggers_job_id_jobs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "upstream", name=op.f("pk_job_triggers")),
    )
    with op.batch_alter_table("job_triggers", schema=None) as batch_op:
        batch_op.create_index("ix_job_triggers_ws_upstream", ["workspace_id", "upstream"], unique=False)

    op.create_table(
        "backfills",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("environment", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("range_start", sa.String(length=10), nullable=False),
        sa.Column("range_end", sa.String(length=10), nullable=False),
        sa.Column("partitions", lakehouse.store.types.JSONDoc(), nullable=True),
        sa.Column("params", lakehouse.store.types.JSONDoc(), nullable=False),
        sa.Column("max_concurrent", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        _ts("created_at", False),
        _ts("finished_at", True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_backfills_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backfills")),
    )
    with op.batch_alter_table("backfills", schema=None) as batch_op:
        batch_op.create_index("ix_backfills_job_created", ["job_id", "created_at"], unique=False)
        batch_op.create_index("ix_backfills_status", ["status"], unique=False)

    op.create_table(
        "job_runs",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("workspace_id", ID, nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        _ts("logical_date", True),
        sa.Column("backfill_id", sa.String(length=36), nullable=True),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.Column("superseded", sa.Boolean(), nullable=False),
        sa.Column("followed_up", sa.Boolean(), nullable=False),
        _ts("created_at", False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_job_runs_run_id_runs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_runs_job_id_jobs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["backfill_id"], ["backfills.id"], name=op.f("fk_job_runs_backfill_id_backfills"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_job_runs")),
    )
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.create_index("ix_job_runs_job_created", ["job_id", "created_at"], unique=False)
        batch_op.create_index("ix_job_runs_backfill", ["backfill_id", "released"], unique=False)
        batch_op.create_index("ix_job_runs_followed_up", ["followed_up"], unique=False)


def downgrade() -> None:
    op.drop_table("job_runs")
    op.drop_table("backfills")
    op.drop_table("job_triggers")
    op.drop_table("job_versions")
    op.drop_table("jobs")
