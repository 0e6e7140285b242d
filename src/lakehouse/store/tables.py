"""Every table of the metadata database (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from lakehouse.store.types import JSONDoc, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrement needs INTEGER

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("slug", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

environments = Table(
    "environments",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(32), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("workspace_id", "name", name="uq_environments_workspace_name"),
)

users = Table(
    "users",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("password_hash", Text, nullable=True),
    Column("role", String(16), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(16), nullable=True),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(12), nullable=False),
    Column("role", String(16), nullable=False),
    Column("name", String(100), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

executors = Table(
    "executors",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("capabilities", JSONDoc(), nullable=False),
    Column("first_seen_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("current_run_id", String(36), nullable=True),
    Column("current_phase", String(200), nullable=True),
    Column("info", JSONDoc(), nullable=True),
    # the workspace of the last phase it claimed: fair claims serve the next workspace in turn (store/caps.py)
    Column("last_workspace_id", ID, nullable=True),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False),
    Column("environment", String(32), nullable=False),
    Column("spec_slug", String(200), nullable=False),
    Column("git_sha", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("input_manifest", JSONDoc(), nullable=False),
    Column("idempotency_key", String(200), nullable=True),
    Column("created_by", String(100), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("last_seq", BigInteger, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("labels", JSONDoc(), nullable=True),
    UniqueConstraint("workspace_id", "idempotency_key", name="uq_runs_workspace_idempotency"),
    Index("ix_runs_ws_created", "workspace_id", "created_at", "id"),
    Index("ix_runs_ws_status_created", "workspace_id", "status", "created_at"),
    Index("ix_runs_spec_created", "spec_slug", "created_at"),
)

phases = Table(
    "phases",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False),  # no foreign key: written with its run (migration 0018)
    Column("idx", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("type", String(64), nullable=False),
    Column("capability", String(64), nullable=False),
    Column("params", JSONDoc(), nullable=False),
    Column("timeout_s", Float, nullable=True),
    Column("max_attempts", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("lease_token", String(64), nullable=True),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    Column("executor_id", String(200), nullable=True),
    Column("available_at", UTCDateTime(), nullable=True),
    Column("claimed_at", UTCDateTime(), nullable=True),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("progress", JSONDoc(), nullable=True),
    Column("output_manifest", JSONDoc(), nullable=True),
    Column("error", Text, nullable=True),
    Column("workspace_id", ID, nullable=True),  # the run's, copied: a claim probes each workspace's queue
    UniqueConstraint("run_id", "idx", name="uq_phases_run_idx"),
    UniqueConstraint("run_id", "name", name="uq_phases_run_name"),
    Index("ix_phases_claimable", "status", "capability", "available_at"),
    Index("ix_phases_lease", "status", "lease_expires_at"),
    Index("ix_phases_ws_claimable", "workspace_id", "status", "available_at", "id"),
)

phase_attempts = Table(
    "phase_attempts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("phase_id", ID, ForeignKey("phases.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("executor_id", String(200), nullable=False),
    Column("lease_token_hash", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("claimed_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("error", Text, nullable=True),
    UniqueConstraint("phase_id", "attempt", name="uq_phase_attempts_phase_attempt"),
)

run_events = Table(
    "run_events",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False),  # no foreign key: written with its run (migration 0018)
    Column("seq", BigInteger, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("type", String(64), nullable=False),
    Column("phase", String(200), nullable=True),
    Column("ts", UTCDateTime(), nullable=False),
    Column("level", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("payload", JSONDoc(), nullable=False),
    UniqueConstraint("run_id", "seq", name="uq_run_events_run_seq"),
    UniqueConstraint("run_id", "event_id", name="uq_run_events_run_event_id"),
)

blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("uri", Text, nullable=False),
    Column("stored_at", UTCDateTime(), nullable=False),
)

# Which workspaces may reference a blob (services/artifacts.py): content uploaded for one of their runs,
# or produced there (a stored query result). Content-addressed storage is shared, reach is not: a sha256
# another workspace uploaded is ``content_missing`` until this workspace uploads the bytes itself.
blob_owners = Table(
    "blob_owners",
    metadata,
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("first_at", UTCDateTime(), nullable=False),
    Column("run_id", String(36), nullable=True),  # the run it was first uploaded or registered for
    Index("ix_blob_owners_sha256", "sha256"),
)

# Content an account uploaded without naming a run: it proved it holds the bytes, so that account's
# first registration of the sha256 on a run makes the blob the run's workspace's (blob_owners).
blob_uploads = Table(
    "blob_uploads",
    metadata,
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("uploaded_at", UTCDateTime(), nullable=False),
    Index("ix_blob_uploads_sha256", "sha256"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("phase", String(200), nullable=False),
    Column("name", String(300), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("media_type", String(200), nullable=False),
    Column("uri", Text, nullable=True),
    Column("metadata", JSONDoc(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("run_id", "phase", "name", name="uq_artifacts_run_phase_name"),
    Index("ix_artifacts_sha256", "sha256"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("ts", UTCDateTime(), nullable=False),
    Column("workspace_id", ID, nullable=True),
    Column("actor", String(100), nullable=False),
    Column("action", String(100), nullable=False),
    Column("object_type", String(64), nullable=True),
    Column("object_id", String(200), nullable=True),
    Column("details", JSONDoc(), nullable=True),
    Column("address", String(64), nullable=True),
    Column("seq", ID, nullable=True),  # chain order, set when the entry is sealed
    Column("prev_hash", String(64), nullable=True),
    Column("hash", String(64), nullable=True),
    Index("ux_audit_log_seq", "seq", unique=True),
)

# --- data plane ---------------------------------------------------------------------------------

query_history = Table(
    "query_history",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False),
    Column("environment", String(32), nullable=False),
    Column("user_name", String(100), nullable=False),
    Column("engine", String(32), nullable=False),
    Column("sql_text", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("duration_ms", Float, nullable=True),
    Column("rows", BigInteger, nullable=True),
    Column("snapshot_ids", JSONDoc(), nullable=True),
    Column("result_sha256", String(64), nullable=True),
    Column("run_id", String(36), nullable=True),
    Column("result_bytes", BigInteger, nullable=True),
    Column("result_expired_at", UTCDateTime(), nullable=True),  # the stored result was deleted then
    Index("ix_query_history_ws_started", "workspace_id", "started_at"),
    Index("ix_query_history_result_sha256", "result_sha256"),
)

watermarks = Table(
    "watermarks",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False),
    Column("environment", String(32), nullable=False),
    Column("pipeline", String(200), nullable=False),
    Column("source_table", String(200), nullable=False),
    Column("column_name", String(200), nullable=False),
    Column("value", Text, nullable=True),
    Column("run_id", String(36), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("workspace_id", "environment", "pipeline", "source_table", name="uq_watermarks_key"),
)

lineage_edges = Table(
    "lineage_edges",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False),
    Column("environment", String(32), nullable=False),
    Column("source", String(300), nullable=False),
    Column("target", String(300), nullable=False),
    Column("run_id", String(36), nullable=True),
    Column("phase", String(200), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("workspace_id", "environment", "source", "target", name="uq_lineage_edges_key"),
    Index("ix_lineage_edges_target", "target"),
)

# --- control room: sessions, login attempts, connections (Issue 4) ------------------------------

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # sha256 of the cookie value; the value is never stored
    Column("user_id", ID, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("address", String(64), nullable=True),
    Index("ix_web_sessions_user", "user_id"),
)

login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("user_name", String(100), nullable=False),
    Column("address", String(64), nullable=True),
    Column("ts", UTCDateTime(), nullable=False),
    Column("ok", Boolean, nullable=False),
    Index("ix_login_attempts_user_ts", "user_name", "ts"),
    Index("ix_login_attempts_address_ts", "address", "ts"),
)

login_throttles = Table(
    "login_throttles",
    metadata,
    # failed logins per (account name, client address); user_name '' is the address as a whole
    Column("user_name", String(100), primary_key=True),
    Column("address", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("first_failure_at", UTCDateTime(), nullable=True),
    Column("last_failure_at", UTCDateTime(), nullable=True),
    Column("locked_until", UTCDateTime(), nullable=True),
)

connections = Table(
    "connections",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False),
    Column("environment", String(32), nullable=False),
    Column("name", String(100), nullable=False),
    Column("type", String(32), nullable=False),
    Column("config", JSONDoc(), nullable=False),  # non-secret settings only
    Column("secrets_enc", Text, nullable=True),  # Fernet token of a JSON object; never leaves the service
    Column("secret_keys", JSONDoc(), nullable=False),  # names of the secrets that are set
    Column("created_by", String(100), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("last_test_at", UTCDateTime(), nullable=True),
    Column("last_test_ok", Boolean, nullable=True),
    Column("last_test_message", Text, nullable=True),
    UniqueConstraint("workspace_id", "environment", "name", name="uq_connections_ws_env_name"),
)

# Keyset pages of the Runs list for admins and multi-workspace members (no workspace prefix to use).
Index("ix_runs_created_id", runs.c.created_at, runs.c.id)
Index("ix_runs_status_created_id", runs.c.status, runs.c.created_at, runs.c.id)
# Lease timeouts of the last 24 h on the Overview: a partial index, so it costs nothing on other events.
Index("ix_run_events_lease_expired", run_events.c.ts, postgresql_where=run_events.c.type == "LEASE_EXPIRED",
      sqlite_where=run_events.c.type == "LEASE_EXPIRED")

# --- jobs, versions, schedules, backfills (Issue 7) ----------------------------------------------

jobs = Table(
    "jobs",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("type", String(16), nullable=False),
    Column("status", String(16), nullable=False),  # domain.jobs.JobStatus
    Column("current_version", Integer, nullable=False),
    Column("paused", Boolean, nullable=False, default=False),
    Column("next_fire_at", UTCDateTime(), nullable=True),  # the next tick the scheduler looks at
    Column("last_tick_at", UTCDateTime(), nullable=True),  # the last tick handled (run or skipped)
    Column("created_by", String(100), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("workspace_id", "name", name="uq_jobs_workspace_name"),
    Index("ix_jobs_next_fire_at", "next_fire_at"),
)

job_versions = Table(
    "job_versions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("job_id", ID, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("definition", JSONDoc(), nullable=False),
    Column("canonical", Text, nullable=False),  # the canonical YAML the hash is of (diffed)
    Column("git_sha", String(64), nullable=True),
    Column("created_by", String(100), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("job_id", "version", name="uq_job_versions_job_version"),
)

job_triggers = Table(
    "job_triggers",
    metadata,
    Column("job_id", ID, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("upstream", String(64), primary_key=True),  # the name of a job of the same workspace
    Column("workspace_id", ID, nullable=False),
    Index("ix_job_triggers_ws_upstream", "workspace_id", "upstream"),
)

backfills = Table(
    "backfills",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("job_id", ID, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("workspace_id", ID, nullable=False),
    Column("version", Integer, nullable=False),
    Column("environment", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # domain.jobs.BackfillStatus
    Column("range_start", String(10), nullable=False),
    Column("range_end", String(10), nullable=False),
    Column("partitions", JSONDoc(), nullable=True),
    Column("params", JSONDoc(), nullable=False),
    Column("max_concurrent", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Index("ix_backfills_job_created", "job_id", "created_at"),
    Index("ix_backfills_status", "status"),
)

job_runs = Table(
    "job_runs",
    metadata,
    # no foreign keys: written with its run, for a job read and a backfill written in that transaction
    # (store/jobs.py insert_runs; migration 0018)
    Column("run_id", String(36), primary_key=True),
    Column("job_id", ID, nullable=False),
    Column("version", Integer, nullable=False),
    Column("workspace_id", ID, nullable=False),
    Column("trigger", String(16), nullable=False),  # domain.jobs.RunTrigger
    Column("logical_date", UTCDateTime(), nullable=True),
    Column("backfill_id", String(36), nullable=True),
    Column("released", Boolean, nullable=False),  # false: a backfill run waiting for a concurrency slot
    Column("superseded", Boolean, nullable=False),  # a backfill run retried by a newer one
    Column("followed_up", Boolean, nullable=False),  # its finish was seen by the trigger pass
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_job_runs_job_created", "job_id", "created_at"),
    Index("ix_job_runs_backfill", "backfill_id", "released"),
    Index("ix_job_runs_followed_up", "followed_up"),
)

promotion_gates = Table(
    "promotion_gates",
    metadata,
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("environment", String(16), primary_key=True),  # stage | prod
    Column("min_runs", Integer, nullable=False),
    Column("require_dq", Boolean, nullable=False),
    Column("require_approval", Boolean, nullable=False),
    Column("approver_role", String(16), nullable=False),
    Column("approver_not_author", Boolean, nullable=False),
    Column("updated_by", String(100), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

job_promotions = Table(
    "job_promotions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("job_id", ID, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("workspace_id", ID, nullable=False),
    Column("version", Integer, nullable=False),
    Column("environment", String(16), nullable=False),  # where the version goes
    Column("status", String(16), nullable=False),  # domain.jobs.PromotionStatus
    Column("gates", JSONDoc(), nullable=False),  # the gates as evaluated when requested (and approved)
    Column("requested_by", String(100), nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("decided_by", String(100), nullable=True),
    Column("decided_at", UTCDateTime(), nullable=True),
    Column("comment", Text, nullable=True),
    Index("ix_job_promotions_job_env", "job_id", "environment", "requested_at"),
)

# --- operations: alerts, routing, notifications, run scores, freshness (Issue 8) ------------------

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("kind", String(32), nullable=False),  # domain.alerts.AlertKind
    Column("severity", String(16), nullable=False),  # domain.alerts.Severity
    Column("environment", String(32), nullable=True),  # scope; NULL: every environment
    Column("job", String(64), nullable=True),  # scope: runs of this job
    Column("pipeline", String(200), nullable=True),  # scope: runs of this spec slug
    Column("team", String(64), nullable=True),  # routes of this team (and the workspace's) get its alerts
    Column("params", JSONDoc(), nullable=False),
    Column("window_s", Float, nullable=False),  # grouping window: repeats within it are not re-sent
    Column("enabled", Boolean, nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("workspace_id", "name", name="uq_alert_rules_workspace_name"),
)

alert_routes = Table(
    "alert_routes",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("team", String(64), nullable=False),  # '' : every alert of the workspace at this severity
    Column("level", Integer, nullable=False),  # 0 first; level n+1 when unacknowledged after escalate_after_s
    Column("connection_id", ID, ForeignKey("connections.id", ondelete="CASCADE"), nullable=False),
    Column("recipients", Text, nullable=True),  # email: comma-separated addresses
    Column("escalate_after_s", Float, nullable=True),
    Column("created_by", String(100), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_alert_routes_ws_severity", "workspace_id", "severity", "level"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("rule_id", ID, ForeignKey("alert_rules.id", ondelete="CASCADE"), nullable=False),
    Column("group_key", String(300), nullable=False),  # what the alert is about: a pipeline, a table …
    Column("status", String(16), nullable=False),  # domain.alerts.AlertStatus
    Column("severity", String(16), nullable=False),
    Column("team", String(64), nullable=True),
    Column("title", Text, nullable=False),
    Column("details", JSONDoc(), nullable=False),
    Column("run_id", String(36), nullable=True),  # the latest run that fired it
    Column("occurrences", Integer, nullable=False),
    Column("first_at", UTCDateTime(), nullable=False),
    Column("last_at", UTCDateTime(), nullable=False),
    Column("notified_at", UTCDateTime(), nullable=True),
    Column("level", Integer, nullable=False),  # highest routing level notified
    Column("escalate_at", UTCDateTime(), nullable=True),
    Column("acked_by", String(100), nullable=True),
    Column("acked_at", UTCDateTime(), nullable=True),
    Column("resolved_by", String(100), nullable=True),  # 'auto' when the condition cleared
    Column("resolved_at", UTCDateTime(), nullable=True),
    Index("ix_alerts_rule_group", "rule_id", "group_key", "status"),
    Index("ix_alerts_ws_status_last", "workspace_id", "status", "last_at"),
    Index("ix_alerts_escalate_at", "escalate_at"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("alert_id", ID, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("workspace_id", ID, nullable=False),
    Column("connection_id", ID, nullable=False),
    Column("recipients", Text, nullable=True),
    Column("event", String(16), nullable=False),  # domain.alerts.NotificationEvent
    Column("level", Integer, nullable=False),
    Column("payload", JSONDoc(), nullable=False),  # the message, rendered when queued (never a secret)
    Column("status", String(16), nullable=False),  # domain.alerts.NotificationStatus
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ix_notifications_due", "status", "next_attempt_at"),
    Index("ix_notifications_alert", "alert_id"),
)

notification_attempts = Table(
    "notification_attempts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("notification_id", ID, ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Float, nullable=True),
    Index("ix_notification_attempts_notification", "notification_id", "attempt"),
)

signal_weights = Table(
    "signal_weights",
    metadata,
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True),
    Column("weights", JSONDoc(), nullable=False),
    Column("updated_by", String(100), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

run_scores = Table(
    "run_scores",
    metadata,
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("workspace_id", ID, nullable=False),
    Column("score", Float, nullable=False),
    Column("signals", JSONDoc(), nullable=False),  # the breakdown: signal, value, penalty, weight, points
    Column("computed_at", UTCDateTime(), nullable=False),
    # the runs list sorted by score walks it per workspace, keyset by (score, run_id): ties stay cheap
    Index("ix_run_scores_ws_score_run", "workspace_id", "score", "run_id"),
)

table_freshness = Table(
    "table_freshness",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("environment", String(32), nullable=False),
    Column("table_name", String(300), nullable=False),
    Column("newest_change_at", UTCDateTime(), nullable=False),  # the newest source change it contains
    Column("run_id", String(36), nullable=True),  # the run that published it
    Column("published_at", UTCDateTime(), nullable=False),
    UniqueConstraint("workspace_id", "environment", "table_name", name="uq_table_freshness_key"),
)

# The dataset registry (services/datasets.py): every table's logical name, owner, description, tags and
# location, registered by hand or when a pipeline publishes it.
datasets = Table(
    "datasets",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("environment", String(32), nullable=False),
    Column("name", String(300), nullable=False),  # logical name: layer.table
    Column("owner", String(100), nullable=True),
    Column("description", Text(), nullable=False, default=""),
    Column("tags", JSONDoc(), nullable=False),  # sorted list of strings
    Column("location", String(2000), nullable=False),  # the table's current metadata file
    Column("format", String(32), nullable=False),
    Column("origin", String(16), nullable=False),  # pipeline | manual
    Column("created_by", String(100), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("last_run_id", String(36), nullable=True),  # the run that last published it
    Column("snapshot_id", BigInteger, nullable=True),
    Column("rows", BigInteger, nullable=True),
    Column("published_at", UTCDateTime(), nullable=True),
    UniqueConstraint("workspace_id", "environment", "name", name="uq_datasets_key"),
    Index("ix_datasets_owner", "workspace_id", "owner"),
)

# Runtime caps (services/caps.py, docs/operations.md): limits per workspace, pipeline, capability or
# executor. Usage is never stored: it is derived from phases and phase_attempts at claim time.
caps = Table(
    "caps",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("workspace_id", ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("scope_kind", String(16), nullable=False),  # domain.caps.ScopeKind
    Column("scope_value", String(200), nullable=False),  # '' for the workspace itself
    Column("max_concurrent", Integer, nullable=True),  # leased phases at once
    Column("runtime_s_per_day", Float, nullable=True),  # phase-attempt seconds per UTC day
    Column("max_phase_timeout_s", Float, nullable=True),  # a claimed phase's timeout_s is at most this
    Column("max_queued_runs", Integer, nullable=True),  # runs waiting in the queue
    Column("queue_mode", String(16), nullable=False),  # domain.caps.QueueMode: reject | hold
    Column("updated_by", String(100), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("workspace_id", "scope_kind", "scope_value", name="uq_caps_scope"),
)

# Runs a queue cap in ``hold`` mode accepted but keeps out of the queue (first phase pending).
held_runs = Table(
    "held_runs",
    metadata,
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("workspace_id", ID, nullable=False),
    Column("cap_id", ID, ForeignKey("caps.id", ondelete="SET NULL"), nullable=True),
    Column("reason", Text, nullable=False),
    Column("held_at", UTCDateTime(), nullable=False),
    Index("ix_held_runs_ws_held", "workspace_id", "held_at"),
)

# the daily runtime budget sums today's attempts: those finished today, and the unfinished ones
Index("ix_phase_attempts_finished", phase_attempts.c.finished_at)
