"""the rows written with a run lose their foreign keys to it: ``phases`` and ``run_events`` to
``runs``, ``job_runs`` to ``runs``, ``jobs`` and ``backfills``. Each was one trigger check per row
(five per run of a job: a third of the database's time for a 10,000-run backfill) that the writing
code already guarantees — the phases, RUN_CREATED events and job links of runs are inserted by the
statements that insert the runs (store/runs.py, store/jobs.py insert_runs), every later event by a
statement that first updates its run's ``last_seq`` (store/queue.py), job links only for a job that
was read and a backfill inserted or locked in the same transaction — and no run, job or backfill is
ever deleted, so nothing relied on their ``ON DELETE CASCADE``. ``runs.workspace_id`` keeps its key

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 18:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

# (table, constraint, column, referred table)
_KEYS = (
    ("phases", "fk_phases_run_id_runs", "run_id", "runs"),
    ("run_events", "fk_run_events_run_id_runs", "run_id", "runs"),
    ("job_runs", "fk_job_runs_run_id_runs", "run_id", "runs"),
    ("job_runs", "fk_job_runs_job_id_jobs", "job_id", "jobs"),
    ("job_runs", "fk_job_runs_backfill_id_backfills", "backfill_id", "backfills"),
)


def upgrade() -> None:
    for table in ("phases", "run_events", "job_runs"):
        with op.batch_alter_table(table) as batch:
            for _, name, _, _ in (k for k in _KEYS if k[0] == table):
                batch.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    for table in ("phases", "run_events", "job_runs"):
        with op.batch_alter_table(table) as batch:
            for _, name, column, referred in (k for k in _KEYS if k[0] == table):
                batch.create_foreign_key(name, referred, [column], ["id"], ondelete="CASCADE")
