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
import http.client
import json
import sys
import urllib.parse
from typing import Any

import typer

FORMATS = ("table", "csv", "json")
MAX_PREVIEW = 10_000  # lakehouse.services.sql.MAX_PREVIEW (a test keeps them equal)


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
            _print_table(answer)
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
        fail(_describe(exc.message, exc.details, query))
        return
    if format == "table":
        _print_table(result)
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
    """The server's answer, or None when there is no token, or a ``LAKEHOUSE_TOKEN`` and no server (then
    the query runs here). An answer that is an error (bad SQL, not allowed, too many queries, a revoked
    token) is printed as one line and exits."""
    from lakehouse.cli.login import resolve, stale_message

    url, token, source = resolve(server)
    if token is None:
        return None
    from lakehouse.cli.common import fail

    body = {"sql": query, "engine": engine, "env": env, "workspace": workspace, "limit": limit,
            **({"timeout_s": timeout} if timeout is not None else {})}
    try:
        status, payload = post(url + "/api/sql", body, token, (timeout or 600) + 30)
    except Unreachable:
        if source == "env":
            return None  # no server here: answer locally
        fail(f"cannot reach the server at {url} (your `lakehouse login`): start it, or add --local to run here")
        return None
    except (OSError, http.client.HTTPException) as exc:
        fail(f"the server at {url} did not answer ({type(exc).__name__})")
        return None
    if status == 200:
        return json.loads(payload)  # type: ignore[no-any-return]
    if status == 401:
        fail(stale_message(url, source))
    try:
        err = json.loads(payload)["error"]
    except (ValueError, KeyError, TypeError):
        fail(f"the server at {url} answered HTTP {status}")
        return None
    fail(_describe(err.get("message", f"HTTP {status}"), err.get("details"), query))
    return None


class Unreachable(Exception):
    """The server did not accept a connection."""


def post(url: str, body: dict[str, Any], token: str, timeout_s: float) -> tuple[int, bytes]:
    """POST ``body`` as JSON to ``url`` with the bearer ``token``; the status and the raw answer.
    The standard library's client: importing httpx alone costs more than the whole answer. Connecting
    waits 5 s at most (else :class:`Unreachable`), reading waits ``timeout_s``."""
    parts = urllib.parse.urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "127.0.0.1", parts.port, timeout=5.0)
    try:
        try:
            conn.connect()
        except OSError as exc:
            raise Unreachable(str(exc)) from None
        if conn.sock is not None:
            conn.sock.settimeout(timeout_s)
        conn.request("POST", parts.path + (f"?{parts.query}" if parts.query else ""), body=json.dumps(body).encode(),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def _describe(message: str, details: Any, query: str) -> str:
    if isinstance(details, dict) and "line" in details:
        line, col = details["line"], details["column"]
        lines = query.split("\n")
        where = f" (line {line}, column {col})"
        if 0 < line <= len(lines):
            return f"{message}{where}\n  {lines[line - 1]}\n  {' ' * max(col - 1, 0)}^"
        return message + where
    return message


def _print_table(result: dict[str, Any]) -> None:
    from rich.table import Table

    from lakehouse.cli.common import console

    table = Table(*[f"{c['name']}\n[dim]{c['type']}[/]" for c in result["columns"]])
    for row in result["rows"]:
        table.add_row(*["[dim]NULL[/]" if v is None else str(v) for v in row])
    console.print(table)
    shown = len(result["rows"])
    more = f" (showing {shown})" if result["truncated"] else ""
    snaps = ", ".join(f"{s['table']}@{s['snapshot_id']}" for s in result["snapshot_ids"])
    rows = result["row_count"]
    console.print(f"{rows:,} row{'' if rows == 1 else 's'}{more} in {result['duration_ms']:.0f} ms"
                  + (f" — read {snaps}" if snaps else "") + f" — query {result['query_id']}", highlight=False)
