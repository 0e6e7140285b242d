"""`lakehouse sql "SELECT …"`: query the lakehouse from a terminal.

Two ways to answer, the same result:

- **through the running server** with a token, in this order: ``LAKEHOUSE_TOKEN`` (an API token, on
  ``--server``, else ``LAKEHOUSE_SERVER``, default ``http://127.0.0.1:$LAKEHOUSE_PORT``), then the login
  stored by `lakehouse login` (on the server it was made on, unless ``--server``): one HTTP call to
  ``POST /api/sql``, on the server's warm DuckDB pool, recorded in the token user's history — as fast as
  the SQL page (``bench/cli_sql.py``). ``--format table`` only; csv and json print every row from the
  full result, so they run here. Without a server, a ``LAKEHOUSE_TOKEN`` query runs here; a stored
  login's is an error (it names a server, maybe another machine's lake). A revoked or expired token is a
  one-line error.
- **here**, as the system: opens the catalog and DuckDB in this process (a cold start: imports and the
  connection cost about a second of CPU), never migrates.

Nothing heavy is imported before it is needed: the command's module loads in milliseconds.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

import typer

from lakehouse.cli import sql_server
from lakehouse.cli.sql_server import FORMATS, MAX_PREVIEW


def sql(query: str = typer.Argument(..., help="One read-only statement; tables are bronze.x, silver.x, gold.x."),
        engine: str = typer.Option("duckdb", "--engine", help="duckdb or trino"),
        format: str = typer.Option("table", "--format", "-f", help="table, csv or json"),
        env: str = typer.Option("dev", "--env", help="environment whose tables bronze/silver/gold are"),
        workspace: str = typer.Option("default", "--workspace"),
        limit: int = typer.Option(100, "--limit", min=0, max=MAX_PREVIEW,
                                  help="rows printed by --format table (csv and json print every row)"),
        timeout: float | None = typer.Option(None, "--timeout", min=0.001,
                                             help="seconds before the query is stopped (default and most: "
                                                  "LAKEHOUSE_SQL_MAX_TIMEOUT_S)"),
        local: bool = typer.Option(False, "--local", help="run here even when a server and a token are there"),
        server: str | None = typer.Option(None, "--server",
                                          help="the server's URL (default: the stored login's, else "
                                               "LAKEHOUSE_SERVER)"),
        ) -> None:
    """Run a query on the lake (DuckDB over Iceberg). Time travel: at_snapshot('bronze.x', <snapshot id>).
    With LAKEHOUSE_TOKEN set or after `lakehouse login`, the query runs on the server (as fast as the SQL
    page)."""
    from lakehouse.cli.common import fail

    if format not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}")
    if format == "table" and not local:
        answer = _via_server(query, engine, env, workspace, limit, timeout, server)
        if answer is not None:
            sql_server.print_table(answer)
            return
    from lakehouse.cli.common import read_context
    from lakehouse.domain.principal import SYSTEM
    from lakehouse.services import sql as sql_service
    from lakehouse.services.errors import ServiceError

    try:
        ctx = read_context()  # a query never migrates (and never races a starting server)
        result = sql_service.run_query(ctx, SYSTEM, query, engine=engine, env=env, workspace=workspace,
                                       limit_preview=limit if format == "table" else 0, timeout_s=timeout)
    except ServiceError as exc:
        fail(sql_server.describe(exc.message, exc.details, query))
        return
    if format == "table":
        sql_server.print_table(result)
        return
    import pyarrow.parquet as pq

    path = sql_service.result_file(ctx, SYSTEM, result["query_id"])
    rows = pq.read_table(path)
    names = [c["name"] for c in result["columns"]]
    cols = [rows.column(i).to_pylist() for i in range(rows.num_columns)]
    records = [[sql_service.jsonable(v) for v in r] for r in zip(*cols, strict=True)]
    if format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        for r in records:
            writer.writerow(["" if v is None else (json.dumps(v) if isinstance(v, dict | list) else v) for v in r])
    else:
        print(json.dumps([dict(zip(names, r, strict=True)) for r in records], indent=2, default=str))


def _via_server(query: str, engine: str, env: str, workspace: str, limit: int, timeout: float | None,
                server: str | None = None) -> dict[str, Any] | None:
    """``sql_server.ask``, its refusals printed as one line (exit 1)."""
    try:
        return sql_server.ask(query, engine, env, workspace, limit, timeout, server)
    except sql_server.Refused as exc:
        from lakehouse.cli.common import fail

        fail(str(exc))
        return None
