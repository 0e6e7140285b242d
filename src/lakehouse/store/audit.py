"""Statements of the append-only audit log (services/audit.py keeps the rules)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from lakehouse.store import dialect
from lakehouse.store.tables import audit_log

_SEAL_LOCK_KEY = 0x1A4E_0A0D


@dataclass(frozen=True)
class AuditRow:
    id: int
    ts: datetime
    workspace_id: int | None
    actor: str
    action: str
    object_type: str | None
    object_id: str | None
    details: dict[str, Any]
    address: str | None
    seq: int | None
    prev_hash: str | None
    hash: str | None


def _row(r: Any) -> AuditRow:
    return AuditRow(id=int(r["id"]), ts=r["ts"], workspace_id=r["workspace_id"], actor=r["actor"],
                    action=r["action"], object_type=r["object_type"], object_id=r["object_id"],
                    details=r["details"] or {}, address=r["address"], seq=r["seq"], prev_hash=r["prev_hash"],
                    hash=r["hash"])


def append(conn: Connection, *, ts: datetime, workspace_id: int | None, actor: str, action: str,
           object_type: str | None, object_id: str | None, details: dict[str, Any], address: str | None) -> None:
    """Insert one unsealed entry (no lock: the hot path never waits for the chain)."""
    conn.execute(audit_log.insert().values(
        ts=ts, workspace_id=workspace_id, actor=actor, action=action, object_type=object_type,
        object_id=object_id, details=details, address=address, seq=None, prev_hash=None, hash=None))


def lock_chain(conn: Connection) -> None:
    """Serialise sealers (PostgreSQL advisory lock; SQLite writers are serial already)."""
    dialect.advisory_xact_lock(conn, _SEAL_LOCK_KEY)


def chain_tail(conn: Connection) -> tuple[int, str | None]:
    """(seq, hash) of the last sealed entry; (0, None) for an empty chain."""
    row = conn.execute(select(audit_log.c.seq, audit_log.c.hash).where(audit_log.c.seq.is_not(None))
                       .order_by(audit_log.c.seq.desc()).limit(1)).first()
    return (int(row[0]), row[1]) if row else (0, None)


def unsealed(conn: Connection, limit: int) -> list[AuditRow]:
    stmt = select(audit_log).where(audit_log.c.seq.is_(None)).order_by(audit_log.c.id).limit(limit)
    return [_row(r) for r in conn.execute(stmt).mappings()]


def seal_row(conn: Connection, row_id: int, seq: int, prev_hash: str, digest: str) -> None:
    conn.execute(update(audit_log).where(audit_log.c.id == row_id, audit_log.c.seq.is_(None))
                 .values(seq=seq, prev_hash=prev_hash, hash=digest))


def sealed_in_order(conn: Connection, batch: int = 5000) -> Iterator[AuditRow]:
    """Every sealed entry in chain order, read in keyset batches."""
    after = 0
    while True:
        rows = [_row(r) for r in conn.execute(
            select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq).limit(batch)).mappings()]
        if not rows:
            return
        yield from rows
        after = rows[-1].seq or after


def count(conn: Connection, *, sealed: bool | None = None) -> int:
    stmt = select(func.count()).select_from(audit_log)
    if sealed is True:
        stmt = stmt.where(audit_log.c.seq.is_not(None))
    elif sealed is False:
        stmt = stmt.where(audit_log.c.seq.is_(None))
    return int(conn.execute(stmt).scalar_one())


def newest(conn: Connection, limit: int, actor: str | None = None, action_prefix: str | None = None
           ) -> list[AuditRow]:
    stmt = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if actor:
        stmt = stmt.where(audit_log.c.actor == actor)
    if action_prefix:
        stmt = stmt.where(audit_log.c.action.startswith(action_prefix, autoescape=True))
    return [_row(r) for r in conn.execute(stmt).mappings()]
