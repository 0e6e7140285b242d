"""`lakehouse sql "SELECT …"`: query the lakehouse from a terminal."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

import typer
from rich.table import Table

from lakehouse.cli.common import console, fail, read_context
from lakehouse.domain.principal import SYSTEM
from lakehouse.services import sql as sql_service
from lakehouse.services.errors import ServiceError

FORMATS = ("table", "csv", "json")


def sql(query: str = typer.Argument(..., help="One read-only statement; tables are bronze.x, silver.x, gold.x."),
        engine: str = typer.Option("duckdb", "--engine", help="duckdb or trino"),
        format: str = typer.Option("table", "--format", "-f", help="table, csv or json"),
        env: str = typer.Option("dev", "--env", help="environment whose tables bronze/silver/gold are"),
        workspace: str = typer.Option("default", "--workspace"),
        limit: int = typer.Option(100, "--limit", min=0, max=sql_service.MAX_PREVIEW,
                                  help="rows printed by --format table (csv and json print every row)"),
        timeout: float | None = typer.Option(None, "--timeout", min=0.001,
                                             help="seconds before the query is stopped (default and most: "
                                                  "LAKEHOUSE_SQL_MAX_TIMEOUT_S)"),
        ) -> None:
    """Run a query on the lake (DuckDB over Iceberg). Time travel: at_snapshot('bronze.x', <snapshot id>)."""
    if format not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}")
    try:
        ctx = read_context()  # a query never migrates (and never races a starting server)
        result = sql_service.run_query(ctx, SYSTEM, query, engine=engine, env=env, workspace=workspace,
                                       limit_preview=limit if format == "table" else 0, timeout_s=timeout)
    except ServiceError as exc:
        fail(_describe(exc, query))
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


def _describe(exc: ServiceError, query: str) -> str:
    details: Any = exc.details
    if isinstance(details, dict) and "line" in details:
        line, col = details["line"], details["column"]
        lines = query.split("\n")
        where = f" (line {line}, column {col})"
        if 0 < line <= len(lines):
            return f"{exc.message}{where}\n  {lines[line - 1]}\n  {' ' * max(col - 1, 0)}^"
        return exc.message + where
    return exc.message


def _print_table(result: dict[str, Any]) -> None:
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
