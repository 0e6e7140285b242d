"""Append-only, hash-chained audit log."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, select

from lakehouse.store import dialect
from lakehouse.store.tables import audit_log

GENESIS = "0" * 64
_LOCK_KEY = 0x1A4E_0A0D


def _digest(prev: str, entry: dict[str, Any]) -> str:
    body = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(prev.encode() + body).hexdigest()


def record(conn: Connection, now: datetime, principal: Any, action: str, object_type: str | None,
           object_id: str | None, workspace_id: int | None, details: dict[str, Any] | None = None,
           address: str | None = None) -> None:
    """Append one entry chained to the previous one, in the caller's transaction."""
    dialect.advisory_xact_lock(conn, _LOCK_KEY)
    prev = conn.execute(select(audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)).scalar() or GENESIS
    entry = {"ts": now.isoformat(), "workspace_id": workspace_id, "actor": getattr(principal, "name", str(principal)),
             "action": action, "object_type": object_type, "object_id": object_id, "details": details or {},
             "address": address}
    conn.execute(audit_log.insert().values(
        ts=now, workspace_id=workspace_id, actor=entry["actor"], action=action, object_type=object_type,
        object_id=object_id, details=details or {}, address=address, prev_hash=prev, hash=_digest(prev, entry),
    ))


def verify(conn: Connection) -> tuple[bool, int | None]:
    """Walk the chain; return (ok, id of the first bad entry)."""
    prev = GENESIS
    for row in conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings():
        entry = {"ts": row["ts"].isoformat(), "workspace_id": row["workspace_id"], "actor": row["actor"],
                 "action": row["action"], "object_type": row["object_type"], "object_id": row["object_id"],
                 "details": row["details"] or {}, "address": row["address"]}
        if row["prev_hash"] != prev or row["hash"] != _digest(prev, entry):
            return False, int(row["id"])
        prev = row["hash"]
    return True, None
