"""Append-only, hash-chained audit log.

Writers append an entry in their own transaction without taking any lock (run creation is a hot
path: a global lock serialised every ``create_run`` of the cluster). A sealer — the server's
maintenance loop every second, and anything that reads the chain — then chains the committed,
unsealed entries in id order under one lock: each gets the next ``seq``, the previous entry's hash and
its own ``sha256(prev_hash + canonical entry)``. Editing or deleting a sealed entry breaks the chain
from there on (``verify``). On SQLite, where writers are serial anyway, entries are sealed in the
transaction that writes them.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson

from lakehouse.domain.roles import Action
from lakehouse.store import audit as store
from lakehouse.store.types_public import Connection

GENESIS = "0" * 64


def _entry(ts: datetime, workspace_id: int | None, actor: str, action: str, object_type: str | None,
           object_id: str | None, details: dict[str, Any], address: str | None) -> dict[str, Any]:
    return {"ts": ts.isoformat(), "workspace_id": workspace_id, "actor": actor, "action": action,
            "object_type": object_type, "object_id": object_id, "details": details, "address": address}


def _digest(prev: str, entry: dict[str, Any]) -> str:
    body = orjson.dumps(entry, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(prev.encode() + body).hexdigest()


def record(conn: Connection, now: datetime, principal: Any, action: str, object_type: str | None,
           object_id: str | None, workspace_id: int | None, details: dict[str, Any] | None = None,
           address: str | None = None) -> None:
    """Append one entry in the caller's transaction (sealed into the chain shortly after)."""
    store.append(conn, ts=now, workspace_id=workspace_id, actor=getattr(principal, "name", str(principal)),
                 action=action, object_type=object_type, object_id=object_id, details=details or {},
                 address=address)
    if conn.dialect.name == "sqlite":
        seal(conn)


def seal(conn: Connection, limit: int = 10_000) -> int:
    """Chain up to ``limit`` committed, unsealed entries; returns how many were sealed."""
    store.lock_chain(conn)
    seq, prev = store.chain_tail(conn)
    prev = prev or GENESIS
    rows = store.unsealed(conn, limit)
    for row in rows:
        seq += 1
        digest = _digest(prev, _entry(row.ts, row.workspace_id, row.actor, row.action, row.object_type,
                                      row.object_id, row.details, row.address))
        store.seal_row(conn, row.id, seq, prev, digest)
        prev = digest
    return len(rows)


def verify(conn: Connection) -> tuple[bool, int | None]:
    """Walk the sealed chain; return (ok, id of the first bad entry)."""
    prev = GENESIS
    for row in store.sealed_in_order(conn):
        entry = _entry(row.ts, row.workspace_id, row.actor, row.action, row.object_type, row.object_id,
                       row.details, row.address)
        if row.prev_hash != prev or row.hash != _digest(prev, entry):
            return False, row.id
        prev = row.hash
    return True, None


def verify_chain(ctx: Any, principal: Any) -> dict[str, Any]:
    """Seal what is pending, then walk the whole chain: ``{ok, first_bad, entries}``."""
    principal.require(Action.AUDIT_VIEW)
    with ctx.db.write() as conn:
        seal(conn)
    with ctx.db.read() as conn:
        ok, bad = verify(conn)
        total = store.count(conn)
    return {"ok": ok, "first_bad": bad, "entries": total}


def newest(ctx: Any, principal: Any, limit: int = 20, actor: str | None = None,
           action_prefix: str | None = None) -> list[store.AuditRow]:
    principal.require(Action.AUDIT_VIEW)
    with ctx.db.read() as conn:
        return store.newest(conn, limit, actor, action_prefix)


def seal_pending(ctx: Any) -> int:
    """The maintenance loop's call (no principal: the server itself)."""
    with ctx.db.write() as conn:
        return seal(conn)
