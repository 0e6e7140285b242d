"""Statements of ``artifacts`` and of the ``blobs`` their content lives in (services/artifacts.py keeps
the rules: names, media types, immutability, who may read what).

Reads on behalf of a principal are scoped to its workspaces (:func:`lakehouse.store.scope.visible`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, select

from lakehouse.store import dialect
from lakehouse.store.scope import visible
from lakehouse.store.tables import artifacts, blob_owners, blob_uploads, blobs, runs


@dataclass(frozen=True)
class BlobRow:
    sha256: str
    size_bytes: int
    uri: str


@dataclass(frozen=True)
class ArtifactRow:
    id: int
    run_id: str
    phase: str
    name: str
    sha256: str
    size_bytes: int
    media_type: str
    uri: str | None
    metadata: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class BlobUse:
    """How one artifact names a blob: what to serve it as."""
    media_type: str
    name: str


def _artifact(r: Any) -> ArtifactRow:
    return ArtifactRow(id=int(r["id"]), run_id=r["run_id"], phase=r["phase"], name=r["name"], sha256=r["sha256"],
                       size_bytes=int(r["size_bytes"]), media_type=r["media_type"], uri=r["uri"],
                       metadata=r["metadata"], created_at=r["created_at"])


def remember_blob(conn: Connection, sha256: str, size_bytes: int, uri: str, now: datetime) -> None:
    """Register stored content (kept as it is when the same sha256 is known already)."""
    dialect.insert_ignore(conn, blobs, [{"sha256": sha256, "size_bytes": size_bytes, "uri": uri,
                                         "stored_at": now}], "sha256")


def own(conn: Connection, workspace_id: int, sha256: str, run_id: str | None, now: datetime) -> None:
    """The workspace may reference this content from now on (kept as it is when it already may)."""
    dialect.insert_ignore(conn, blob_owners, [{"workspace_id": workspace_id, "sha256": sha256, "first_at": now,
                                               "run_id": run_id}], "workspace_id", "sha256")


def owns(conn: Connection, workspace_id: int, sha256: str) -> bool:
    """Whether the workspace uploaded or produced this content."""
    return conn.execute(select(blob_owners.c.sha256).where(
        blob_owners.c.workspace_id == workspace_id, blob_owners.c.sha256 == sha256)).first() is not None


def remember_upload(conn: Connection, user_id: int, sha256: str, now: datetime) -> None:
    """The account uploaded this content (without naming a run): it holds the bytes."""
    dialect.insert_ignore(conn, blob_uploads, [{"user_id": user_id, "sha256": sha256, "uploaded_at": now}],
                          "user_id", "sha256")


def uploaded_by(conn: Connection, user_id: int, sha256: str) -> bool:
    return conn.execute(select(blob_uploads.c.sha256).where(
        blob_uploads.c.user_id == user_id, blob_uploads.c.sha256 == sha256)).first() is not None


def blob(conn: Connection, sha256: str) -> BlobRow | None:
    row = conn.execute(select(blobs.c.sha256, blobs.c.size_bytes, blobs.c.uri)
                       .where(blobs.c.sha256 == sha256)).first()
    return None if row is None else BlobRow(sha256=row[0], size_bytes=int(row[1]), uri=row[2])


def find(conn: Connection, run_id: str, phase: str, name: str) -> ArtifactRow | None:
    """The artifact a run's phase registered under ``name``."""
    row = conn.execute(select(artifacts).where(artifacts.c.run_id == run_id, artifacts.c.phase == phase,
                                               artifacts.c.name == name)).mappings().first()
    return None if row is None else _artifact(row)


def insert(conn: Connection, *, run_id: str, phase: str, name: str, sha256: str, size_bytes: int, media_type: str,
           uri: str | None, metadata: dict[str, Any], now: datetime) -> ArtifactRow:
    """Insert one artifact and return it as stored."""
    row_id = int(conn.execute(artifacts.insert().values(
        run_id=run_id, phase=phase, name=name, sha256=sha256, size_bytes=size_bytes, media_type=media_type,
        uri=uri, metadata=metadata, created_at=now,
    ).returning(artifacts.c.id)).scalar_one())
    return _artifact(conn.execute(select(artifacts).where(artifacts.c.id == row_id)).mappings().one())


def of_run(conn: Connection, run_id: str) -> list[ArtifactRow]:
    """The artifacts of one run, in registration order."""
    rows = conn.execute(select(artifacts).where(artifacts.c.run_id == run_id).order_by(artifacts.c.id)).mappings()
    return [_artifact(r) for r in rows]


def uses_of_blob(conn: Connection, workspace_ids: Collection[int] | None, sha256: str) -> list[BlobUse]:
    """The artifacts naming this content in runs of the visible workspaces that own it (uploaded or
    produced it there), in registration order. An artifact naming content its workspace never held (a
    ``uri`` registration of another workspace's sha256) is no way to that content."""
    owned = exists().where(and_(blob_owners.c.workspace_id == runs.c.workspace_id, blob_owners.c.sha256 == sha256))
    stmt = (select(artifacts.c.media_type, artifacts.c.name).join(runs, runs.c.id == artifacts.c.run_id)
            .where(artifacts.c.sha256 == sha256, owned))
    stmt = visible(stmt, runs.c.workspace_id, workspace_ids).order_by(artifacts.c.id)
    return [BlobUse(media_type=r[0], name=r[1]) for r in conn.execute(stmt).all()]
