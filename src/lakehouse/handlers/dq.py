"""Data-quality checks over Arrow tables in DuckDB. Pure of the control plane: results are dicts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def run_check(con: duckdb.DuckDBPyConnection, check: dict[str, Any], tables: dict[str, pa.Table],
              published_rows: dict[str, int | None], now: datetime | None = None) -> dict[str, Any]:
    """Run one check; ``tables`` maps SQL names to the data to check (staged or published)."""
    table = check["table"]
    kind = check["type"]
    result: dict[str, Any] = {"table": table, "type": kind, "severity": check.get("severity", "error")}
    data = tables.get(table)
    if data is None:
        return {**result, "passed": False, "message": f"table {table} does not exist"}
    view = "__dq_" + table.replace(".", "_")
    con.register(view, data)
    try:
        passed, observed, message = _CHECKS[kind](con, view, data, check, published_rows.get(table), tables,
                                                  now or datetime.now(UTC))
    except (duckdb.Error, KeyError) as exc:
        passed, observed, message = False, None, f"check could not run: {str(exc).splitlines()[0]}"
    finally:
        con.unregister(view)
    return {**result, "passed": passed, "observed": observed, "message": message,
            "check": {k: v for k, v in check.items() if k not in ("table", "type", "severity")}}


def _row_count(con: Any, view: str, data: pa.Table, c: dict[str, Any], published: int | None,
               tables: Any, now: datetime) -> tuple[bool, Any, str]:
    n = data.num_rows
    problems = []
    if c.get("min") is not None and n < c["min"]:
        problems.append(f"{n} rows < min {c['min']}")
    if c.get("max") is not None and n > c["max"]:
        problems.append(f"{n} rows > max {c['max']}")
    delta = None
    if c.get("max_delta_pct") is not None and published:
        delta = abs(n - published) / published * 100
        if delta > c["max_delta_pct"]:
            problems.append(f"row count changed {delta:.1f}% vs published ({published}), over {c['max_delta_pct']}%")
    observed = {"rows": n, "published_rows": published, "delta_pct": delta}
    return not problems, observed, "; ".join(problems) or f"{n} rows"


def _not_null(con: Any, view: str, data: pa.Table, c: dict[str, Any], published: int | None,
              tables: Any, now: datetime) -> tuple[bool, Any, str]:
    n = max(data.num_rows, 1)
    fractions = {}
    for col in c["columns"]:
        nulls = con.execute(f"SELECT count(*) FILTER (WHERE {_q(col)} IS NULL) FROM {view}").fetchone()[0]
        fractions[col] = nulls / n
    bad = {k: v for k, v in fractions.items() if v > c.get("max_null_fraction", 0.0)}
    msg = ", ".join(f"{k}: {v:.2%} null" for k, v in bad.items()) or "no unexpected nulls"
    return not bad, fractions, msg


def _unique(con: Any, view: str, data: pa.Table, c: dict[str, Any], published: int | None,
            tables: Any, now: datetime) -> tuple[bool, Any, str]:
    cols = ", ".join(_q(x) for x in c["columns"])
    dupes = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM {view} GROUP BY ALL HAVING count(*) > 1)"
                        ).fetchone()[0]
    return dupes == 0, {"duplicate_keys": dupes}, f"{dupes} duplicated keys on ({', '.join(c['columns'])})"


def _accepted(con: Any, view: str, data: pa.Table, c: dict[str, Any], published: int | None,
              tables: Any, now: datetime) -> tuple[bool, Any, str]:
    rows = con.execute(f"SELECT DISTINCT {_q(c['column'])}::VARCHAR FROM {view} WHERE {_q(c['column'])} IS NOT NULL"
                       ).fetchall()
    allowed = {str(v) for v in c["values"]}
    unexpected = sorted(r[0] for r in rows if r[0] not in allowed)
    return not unexpected, {"unexpected": unexpected[:20]}, (
        f"unexpected values in {c['column']}: {', '.join(unexpected[:5])}" if unexpected else "all values accepted")


def _relationship(con: Any, view: str, data: pa.Table, c: dict[str, Any], published: int | None,
                  tables: dict[str, pa.Table], now: datetime) -> tuple[bool, Any, str]:
    target = tables.get(c["to"])
    if target is None:
        return False, None, f"referenced table {c['to']} does not exist"
    con.register("__dq_target", target)
    try:
        orphans = con.execute(
            f"SELECT count(*) FROM {view} s WHERE s.{_q(c['column'])} IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM __dq_target t WHERE t.{_q(c['to_column'])} = s.{_q(c['column'])})").fetchone()[0]
    finally:
        con.unregister("__dq_target")
    return orphans == 0, {"orphans": orphans}, f"{orphans} rows of {c['column']} have no {c['to']}.{c['to_column']}"


def _freshness(con: Any, view: str, data: pa.Table, c: dict[str, Any], published: int | None,
               tables: Any, now: datetime) -> tuple[bool, Any, str]:
    latest = con.execute(f"SELECT max({_q(c['column'])})::TIMESTAMP FROM {view}").fetchone()[0]
    if latest is None:
        return False, None, "no rows"
    age_h = (now.replace(tzinfo=None) - latest).total_seconds() / 3600
    return age_h <= c["max_age_hours"], {"latest": latest.isoformat(), "age_hours": round(age_h, 3)}, (
        f"newest {c['column']} is {age_h:.1f} h old (limit {c['max_age_hours']} h)")


def _schema(con: Any, view: str, data: pa.Table, c: dict[str, Any], published: int | None,
            tables: Any, now: datetime) -> tuple[bool, Any, str]:
    actual = {f.name: str(f.type) for f in data.schema}
    problems = []
    for col, typ in c["columns"].items():
        if col not in actual:
            problems.append(f"missing column {col}")
        elif typ and not actual[col].startswith(typ):
            problems.append(f"{col} is {actual[col]}, expected {typ}")
    return not problems, actual, "; ".join(problems) or "schema as expected"


_CHECKS = {"row_count": _row_count, "not_null": _not_null, "unique": _unique, "accepted_values": _accepted,
           "relationship": _relationship, "freshness": _freshness, "schema": _schema}
