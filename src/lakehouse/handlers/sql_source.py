"""A ``sql`` phase with ``params.connection``: the statement of a sql job with ``connection:`` runs on
that PostgreSQL source, read-only, with a statement timeout (connectors/pg_readonly.py).

The worker asks the control plane for the connection for its lease (``POST
/ops/runs/{run_id}/connections/{name}``): it is handed out only to the current lease holder, only for a
connection the run declared, in the run's workspace and environment, and only while the run's creator
may still use connections there. The secret stays in this process's memory for the phase; messages
that leave it are redacted. With ``params.target`` the rows are staged for the ``publish`` phase (the
job's write mode); without, they become the phase's Parquet artifact with a preview.
"""

from __future__ import annotations

import hashlib
from typing import Any

from lakehouse.worker.context import PhaseContext, PhaseError

DEFAULT_TIMEOUT_S = 300.0
MAX_ROWS = 1_000_000


def run_on_connection(ctx: PhaseContext) -> dict[str, Any]:
    from lakehouse.connectors import pg_readonly
    from lakehouse.connectors.errors import SourceError, SourceUnavailable
    from lakehouse.handlers import staging
    from lakehouse.handlers.pipeline_common import _settings, _table
    from lakehouse.lake.hashing import content_hash

    name = str(ctx.params["connection"])
    sql = ctx.params.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise PhaseError("params.sql must be a SQL string", retryable=False)
    target = ctx.params.get("target")
    if target is not None:
        _table(str(target))
    try:
        pg_readonly.check_statement(sql)
    except SourceError as exc:
        raise PhaseError(f"sql_not_allowed: {exc.message}", retryable=False) from None
    handed = ctx.leased_connection(name)
    secrets = [str(v) for v in (handed.get("secrets") or {}).values() if v]
    if handed.get("type") != "postgres" or not handed.get("url"):
        raise PhaseError(f"connection {name} is a {handed.get('type')} connection; sql jobs run on PostgreSQL "
                         "connections only", retryable=False)
    settings = _settings(ctx)
    if staging.same_database(str(handed["url"]), settings.database_url):
        raise PhaseError("a job may not read the control plane's metadata database", retryable=False)
    timeout_s = min(float(ctx.params.get("timeout_s") or DEFAULT_TIMEOUT_S), DEFAULT_TIMEOUT_S)
    ctx.progress(f"running the statement on {name}")
    try:
        table = pg_readonly.query(str(handed["url"]), sql, timeout_s=timeout_s, max_rows=MAX_ROWS)
    except SourceUnavailable as exc:
        raise PhaseError(f"connection {name}: {_redact(exc.message, secrets)}", retryable=True) from None
    except SourceError as exc:
        raise PhaseError(f"connection {name}: {_redact(exc.message, secrets)}", retryable=False) from None
    finally:
        handed.clear()  # the secret leaves memory with the phase
    ctx.log(f"{table.num_rows} rows from {name} (read-only)", rows=table.num_rows, connection=name)
    if target is not None:
        path = staging.write(settings, ctx, str(target), table)
        entry = staging.manifest_entry(path, table, content_hash(table), source=f"{name}.query")
        return {"outputs": {str(target): entry}}
    out = ctx.workdir / "result.parquet"
    import pyarrow.parquet as pq

    pq.write_table(table, out)
    rows_hash = hashlib.sha256()
    for batch in table.to_batches():
        rows_hash.update(str(batch.to_pylist()).encode())
    preview = [{k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v)) for k, v in r.items()}
               for r in table.slice(0, 20).to_pylist()]
    art = ctx.add_artifact(str(ctx.params.get("name", "result.parquet")), out, "application/vnd.apache.parquet",
                           {"rows": table.num_rows, "columns": table.column_names, "preview": preview,
                            "connection": name})
    return {"outputs": {"result": {"rows": table.num_rows, "columns": table.column_names,
                                   "content_hash": rows_hash.hexdigest(), "artifact_sha256": art["sha256"]}}}


def _redact(message: str, secrets: list[str]) -> str:
    for s in secrets:
        message = message.replace(s, "•••••")
    return message
