"""One settings class, built at the edge (CLI, app factory) and passed down."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource


class Settings(BaseSettings):
    """Every setting of the control plane; environment variables use the ``LAKEHOUSE_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="LAKEHOUSE_", toml_file="lakehouse.toml", extra="ignore")

    home: Path = Field(default=Path(".lakehouse"), description="Root folder of the embedded install.")
    database_url: str = Field(default="", description="Metadata database (SQLite or postgresql+psycopg).")
    warehouse: str = Field(default="", description="Iceberg warehouse: a folder or s3://bucket/prefix.")
    secret_key: str = Field(default="", description="Fernet key that encrypts connection secrets.")
    lease_ttl_s: float = Field(default=30.0, gt=0, description="How long a lease lives without heartbeat.")
    claim_start_timeout_s: float = Field(
        default=60.0, gt=0, description="A claimed phase not started within this is requeued."
    )
    reaper_interval_s: float = Field(default=1.0, gt=0, description="How often expired leases are reaped.")
    executor_stale_s: float = Field(default=60.0, gt=0, description="Executor silent this long is stale.")
    phase_kill_grace_s: float = Field(
        default=10.0, ge=0, description="A stopped phase's process group gets SIGTERM, then SIGKILL after this."
    )
    max_body_bytes: int = Field(default=1_048_576, gt=0, description="Largest JSON request body.")
    max_artifact_bytes: int = Field(default=512 * 1024 * 1024, gt=0, description="Largest artifact upload.")
    retry_base_s: float = Field(default=1.0, ge=0, description="First retry delay; doubles per attempt.")
    retry_max_s: float = Field(default=300.0, ge=0, description="Longest retry delay.")
    pipelines_dir: Path = Field(default=Path("pipelines"), description="Folder of pipeline YAML specs.")
    log_level: str = Field(default="INFO", description="Log level of servers and workers (JSON logs on stderr).")
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="Log lines: `json`, `text`, or `auto` (text on a terminal, JSON otherwise).")
    port: int = Field(default=8000, description="HTTP port of `lakehouse up`/`serve`.")
    host: str = Field(default="127.0.0.1", description="HTTP bind address.")

    python_modules: list[str] = Field(
        default=["lakehouse.handlers.samples"],
        description="Module prefixes whose functions `python` phases and Python transforms may call "
                    "(besides the `lakehouse.python` entry points); set by an admin.")

    egress_allow: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1", "localhost"],
        description="Networks, addresses and host names (or *.domain) connection tests and webhooks may reach.",
    )
    sqlite_source_dirs: list[Path] = Field(
        default_factory=list,
        description="Folders a sqlite connection may point into (empty: $LAKEHOUSE_HOME/sources and /demo).",
    )

    sql_workers: int = Field(default=8, ge=1, le=256,
                             description="Threads that run /api/sql and SQL-page queries, apart from the HTTP ones.")
    sql_queue: int = Field(default=32, ge=0, description="Queries that may wait for a free SQL thread (429 beyond).")
    sql_max_per_user: int = Field(default=4, ge=1, description="Queries one user may run at once (429 beyond).")
    sql_max_per_workspace: int = Field(default=8, ge=1, description="Queries a workspace may run at once (429 beyond).")
    sql_max_timeout_s: float = Field(default=300.0, gt=0,
                                     description="Longest a query may run; asking for more is refused (422).")
    sql_memory_limit_mb: int = Field(default=2048, ge=16, description="DuckDB memory limit of each query.")
    sql_preview_max_bytes: int = Field(default=1_048_576, ge=1024,
                                       description="Largest preview (JSON rows) an SQL answer carries.")
    sql_result_retention_days: float = Field(default=30.0, gt=0, description="Stored query results older are deleted.")
    sql_result_quota_bytes: int = Field(default=1 << 30, ge=0,
                                        description="Stored query results per workspace; oldest deleted beyond.")
    trusted_proxies: list[str] = Field(
        default=[], description="Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For gives the "
                                "client address; otherwise the socket peer is the client.")
    max_connections: int = Field(default=1000, gt=0,
                                 description="Open HTTP connections the server keeps; more get a 503 at once.")
    header_timeout_s: float = Field(default=10.0, gt=0,
                                    description="A request's headers must arrive within this (else closed).")
    body_timeout_s: float = Field(default=60.0, gt=0,
                                  description="Longest wait between two reads of a request body (else closed).")
    keep_alive_timeout_s: int = Field(default=5, ge=1, description="Idle keep-alive connections close after this.")
    artifact_store_max_bytes: int = Field(default=0, ge=0,
                                          description="Capacity of the local artifact store (0: the disk's); "
                                                      "uploads beyond it get a 507.")
    database_wait_s: float = Field(default=60.0, ge=0,
                                   description="How long `serve`/`up` wait for an unreachable metadata database "
                                               "at start-up before giving up.")
    processes: int = Field(default=0, ge=0, le=64,
                           description="HTTP server processes of `serve` on PostgreSQL (0: one per core); "
                                       "SQLite always runs one.")

    scheduler_interval_s: float = Field(default=10.0, gt=0,
                                        description="How often the scheduler looks for due ticks, triggers and "
                                                    "backfill slots (inside serve/up).")
    scheduler_grace_s: float = Field(default=300.0, ge=0,
                                     description="With catch-up 'none', a tick later than this is skipped.")
    backfill_max_runs: int = Field(default=100_000, gt=0, description="Most runs one backfill may create.")

    alert_interval_s: float = Field(default=5.0, gt=0,
                                    description="How often the operations pass runs inside serve/up: timed alert "
                                                "rules, escalations, notification delivery, run scores.")
    alert_max_attempts: int = Field(default=8, ge=1, le=100,
                                    description="Delivery attempts of one notification before it is failed.")
    alert_retry_base_s: float = Field(default=5.0, ge=0,
                                      description="First delay before a notification is retried; doubles per attempt.")
    alert_retry_max_s: float = Field(default=900.0, ge=0, description="Longest delay between notification attempts.")
    alert_send_timeout_s: float = Field(default=10.0, gt=0,
                                        description="Timeout of one webhook request or SMTP conversation.")
    alert_smtp_ca_file: Path | None = Field(default=None,
                                            description="Extra CA bundle trusted for SMTP STARTTLS (besides the "
                                                        "system's), e.g. an internal mail relay's CA.")
    metrics_token: str = Field(default="",
                               description="Bearer token /metrics requires; empty: /metrics answers loopback "
                                           "clients only.")

    openlineage_file: str = Field(default="",
                                  description="File that OpenLineage run events are appended to (JSON lines); "
                                              "empty: no file transport.")
    openlineage_url: str = Field(default="",
                                 description="Base URL of an OpenLineage HTTP receiver (Marquez, DataHub); "
                                             "empty: no HTTP transport.")
    openlineage_endpoint: str = Field(default="api/v1/lineage", description="Path of the receiver's endpoint.")
    openlineage_api_key: str = Field(default="", description="Bearer token sent to the OpenLineage receiver.")
    openlineage_namespace: str = Field(default="lakehouse",
                                       description="OpenLineage namespace of our jobs and datasets.")
    trino_max_scan_bytes: int = Field(default=0, ge=0,
                                      description="Largest input a trino phase may read by Trino's EXPLAIN (TYPE IO) "
                                                  "estimate (0: no cap); a phase may lower it, never raise it.")

    s3_endpoint: str = Field(default="", description="S3 endpoint URL for the warehouse and artifact store "
                                                     "(MinIO, moto: http://127.0.0.1:9000); empty: AWS.")
    s3_region: str = Field(default="", description="S3 region (us-east-1 when an endpoint is set and none given).")
    s3_access_key_id: str = Field(default="", description="S3 access key id (empty: the AWS_* environment).")
    s3_secret_access_key: str = Field(default="", description="S3 secret access key (empty: the AWS_* environment).")
    s3_session_token: str = Field(default="", description="S3 session token, for temporary credentials.")
    s3_url_style: Literal["auto", "path", "vhost"] = Field(
        default="auto", description="S3 addressing: `path`, `vhost`, or `auto` (path with an endpoint, else vhost).")
    s3_vending_role_arn: str = Field(
        default="", description="Vend short-lived S3 credentials per lease (docs/security.md): the IAM role the "
                                "control plane assumes (STS AssumeRole, with its own S3 credentials) for a run's "
                                "workspace and environment; `{workspace}` and `{environment}` are replaced, e.g. "
                                "`arn:aws:iam::123456789012:role/lakehouse-{workspace}`. Empty: workers use their "
                                "own S3 credentials.")
    s3_vending_duration_s: int = Field(default=3600, ge=900, le=43200,
                                       description="Lifetime of vended S3 credentials (STS DurationSeconds).")
    s3_sts_endpoint: str = Field(default="", description="STS endpoint for vending (empty: LAKEHOUSE_S3_ENDPOINT "
                                                         "when set, else AWS's).")
    artifact_store: str = Field(default="", description="Where artifacts are kept: empty ($LAKEHOUSE_HOME/artifacts) "
                                                        "or s3://bucket/prefix.")
    upload_sweep_age_s: float = Field(
        default=3600.0, ge=0, description="Temporary files of uploads (and of query results being written) idle "
                                          "this long are removed by serve/up, and S3 multipart uploads aborted; "
                                          "more than the body and query timeouts; 0: never.")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        self.home = self.home.expanduser().resolve()
        self.pipelines_dir = self.pipelines_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'control.db'}"
        if not self.warehouse:
            self.warehouse = str(self.home / "warehouse")
        longest = max(self.body_timeout_s, self.sql_max_timeout_s)
        if self.upload_sweep_age_s and self.upload_sweep_age_s <= longest:  # would remove uploads in progress
            raise ValueError(f"upload_sweep_age_s ({self.upload_sweep_age_s:g}) must be more than body_timeout_s and "
                             f"sql_max_timeout_s ({longest:g}): a file idle for less may still be written")
        return self

    def s3_properties(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """pyiceberg-style ``s3.*`` properties from these settings, falling back on the standard
        ``AWS_*`` variables of ``environ`` for what is not set here."""
        env = os.environ if environ is None else environ
        props: dict[str, str] = {}
        endpoint = self.s3_endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
        if endpoint:
            props["s3.endpoint"] = endpoint
        for value, var, key in ((self.s3_access_key_id, "AWS_ACCESS_KEY_ID", "s3.access-key-id"),
                                (self.s3_secret_access_key, "AWS_SECRET_ACCESS_KEY", "s3.secret-access-key"),
                                (self.s3_session_token, "AWS_SESSION_TOKEN", "s3.session-token")):
            if value or env.get(var):
                props[key] = value or env[var]
        region = (self.s3_region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
                  or ("us-east-1" if endpoint else ""))
        if region:
            props["s3.region"] = region
        style = self.s3_url_style if self.s3_url_style != "auto" else ("path" if endpoint else "vhost")
        props["s3.force-virtual-addressing"] = "true" if style == "vhost" else "false"
        return props

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def ensure_home(self) -> None:
        """Create LAKEHOUSE_HOME and the secret key file on first start."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        if not self.secret_key:
            key_file = self.home / "secret.key"
            if not key_file.exists():
                from cryptography.fernet import Fernet

                key_file.write_bytes(Fernet.generate_key())
                key_file.chmod(0o600)
            self.secret_key = key_file.read_text().strip()


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)
