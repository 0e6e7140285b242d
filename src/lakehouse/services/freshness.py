"""Freshness of published tables: now minus the newest source change a table contains.

The newest change is measured from the source, not from when a run finished: a bronze table holds
source rows up to its incremental watermark (the newest ``write_date`` ingested), recorded in the
transaction that records the publish (:func:`on_manifest`, called from the queue's manifest
recording); a silver or gold table built in the same publish holds what its inputs held, the
newest of them (lineage edges of the manifest). A table that is published without new source rows
keeps its newest change, so it ages while the source is quiet: the SLO speaks of the source's
changes, which is what a platform lead asks ("is the newest order in gold?").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.services.context import Context
from lakehouse.store import ops_reads
from lakehouse.store.types_public import Connection, RowMapping

_LAYERS = {"bronze": 0, "silver": 1, "gold": 2}


def parse_change(value: Any) -> datetime | None:
    """A watermark value as a UTC time (Odoo's ``write_date`` is naive UTC); None if it is not a time."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str) and value:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def on_manifest(conn: Connection, run: RowMapping, manifest: dict[str, Any], now: datetime) -> int:
    """Record the newest source change of each table a publish committed; returns how many tables.
    Called in the transaction that records the phase's manifest."""
    outputs = manifest.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return 0
    ws, env = run["workspace_id"], run["environment"]
    known: dict[str, datetime] = {}
    for table, mark in (manifest.get("watermarks") or {}).items():
        at = parse_change((mark or {}).get("value")) if isinstance(mark, dict) else None
        if at is not None:
            known[f"bronze.{table}"] = at
    inputs: dict[str, set[str]] = {}
    for edge in (manifest.get("lineage") or {}).get("edges") or []:
        for out in edge.get("outputs") or []:
            inputs.setdefault(out, set()).update(edge.get("inputs") or [])
    written = 0
    for table in sorted(outputs, key=lambda t: (_LAYERS.get(t.split(".")[0], 9), t)):
        at = known.get(table)
        if at is None and table in inputs:
            seen = [known.get(i) or _stored(conn, ws, env, i) for i in inputs[table]]
            dates = [d for d in seen if d is not None]
            at = max(dates) if dates else None
        if at is None:
            continue
        known[table] = at
        ops_reads.freshness_put(conn, ws, env, table, newest_change_at=at, run_id=run["id"], now=now)
        written += 1
    return written


def _stored(conn: Connection, ws: int, env: str, table: str) -> datetime | None:
    row = ops_reads.freshness_get(conn, ws, env, table)
    return row["newest_change_at"] if row is not None else None


def list_freshness(ctx: Context, principal: Principal, environment: str | None = None,
                   slo_s: float = 900.0) -> list[dict[str, Any]]:
    """Every published table the principal may see with its freshness against ``slo_s``."""
    principal.require(Action.READ)
    now = ctx.clock()
    with ctx.db.read() as conn:
        rows = ops_reads.freshness_rows(conn, principal.workspace_ids, environment=environment)
    out = []
    for r in rows:
        age = (now - r["newest_change_at"]).total_seconds()
        out.append({"workspace": r["workspace"], "environment": r["environment"], "table": r["table_name"],
                    "newest_change_at": r["newest_change_at"], "freshness_s": round(age, 1), "slo_s": slo_s,
                    "breached": age > slo_s, "run_id": r["run_id"], "published_at": r["published_at"]})
    return out
