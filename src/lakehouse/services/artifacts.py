"""Artifacts: immutable, content-addressed blobs with metadata, referenced by runs.

The content lives in the artifact store the settings choose (``LAKEHOUSE_ARTIFACT_STORE``): a folder
under ``LAKEHOUSE_HOME`` or ``s3://bucket/prefix`` (lakehouse.lake.s3store). Executors upload and
download through the control plane either way; downloads are streamed by the control plane, never
redirected to the bucket (docs/architecture.md, "Artifacts").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator, Generator
from typing import Any
from urllib.parse import quote

from lakehouse.domain.events import EventType
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.lake.blobstore import ArtifactStore, BlobStore, HashMismatch, TooBig
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, InvalidInput, NotFound, TooLarge
from lakehouse.store import artifacts as store
from lakehouse.store import queue


def store_for(ctx: Context) -> ArtifactStore:
    """The artifact store the settings name: ``s3://bucket/prefix`` or the local folder."""
    if ctx.settings.artifact_store:
        from lakehouse.lake.s3store import S3BlobStore

        return S3BlobStore.from_settings(ctx.settings)
    return local_store(ctx)


def local_store(ctx: Context) -> BlobStore:
    """The store under LAKEHOUSE_HOME (artifacts when no other is set; stored query results always)."""
    return BlobStore(ctx.settings.artifacts_dir, ctx.settings.artifact_store_max_bytes)


def adopt_local(ctx: Context, sha256: str) -> int:
    """Make a blob of the local store (a query result) an artifact's content: copied to the artifact
    store when that is elsewhere (S3); returns its size."""
    local = local_store(ctx)
    target = store_for(ctx)
    if isinstance(target, BlobStore):
        return local.path(sha256).stat().st_size
    return target.put_file(sha256, local.path(sha256))


async def upload(ctx: Context, sha256: str, chunks: AsyncIterator[bytes], principal: Principal,
                 run_id: str | None = None) -> dict[str, Any]:
    """Store content under its sha256; the server checks the hash. The same sha is stored once, but
    reaching it is per workspace: every upload carries the body (no "already have it" answer), and
    makes the content the named run's workspace's, or (no run named) the uploading account's until it
    registers it on a run. A workspace never reaches content only another workspace uploaded."""
    principal.require(Action.EXECUTE)
    _check_sha(sha256)
    workspace_id: int | None = None
    if run_id is not None:
        with ctx.db.read() as conn:
            run = queue.get_run(conn, run_id)
        if run is None or not principal.can_see(run["workspace_id"]):
            raise NotFound(f"run {run_id} not found", code="run_not_found")
        workspace_id = int(run["workspace_id"])
    bs = store_for(ctx)
    try:
        size = await bs.put_stream(sha256, chunks, ctx.settings.max_artifact_bytes)
    except HashMismatch as exc:
        raise InvalidInput(str(exc), code="sha256_mismatch",
                           details={"expected": exc.expected, "actual": exc.actual}) from None
    except TooBig as exc:
        raise TooLarge(str(exc), code="too_large") from None
    # registered only now: the content is complete, checked and in place under its key
    with ctx.db.write() as conn:
        now = ctx.clock()
        store.remember_blob(conn, sha256, size, bs.uri(sha256), now)
        if workspace_id is not None:
            store.own(conn, workspace_id, sha256, run_id, now)
        elif principal.user_id is not None:
            store.remember_upload(conn, principal.user_id, sha256, now)
    return {"sha256": sha256, "size_bytes": size, "stored": True}


def _check_sha(sha256: str) -> None:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise InvalidInput("sha256 must be 64 lowercase hex characters", code="invalid_sha256")


NAME_MAX = 200
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 9110 token
MEDIA_TYPE_RE = re.compile(rf'{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|"[^"\\\x00-\x1f\x7f]*"))*')


def check_name(name: str) -> None:
    """An artifact name is a file name: printable, no path separator, at most NAME_MAX characters."""
    if not name or len(name) > NAME_MAX or not name.isprintable() or "/" in name or "\\" in name \
            or name in (".", ".."):
        raise InvalidInput(f"name: an artifact name is 1-{NAME_MAX} printable characters without / or \\ "
                           "(a file name, not a path)", code="invalid_artifact_name", details={"field": "name"})


def check_media_type(media_type: str) -> None:
    """``type/subtype`` tokens (RFC 9110), optionally with ``; key=value`` parameters."""
    if len(media_type) > 200 or not MEDIA_TYPE_RE.fullmatch(media_type):
        raise InvalidInput("media_type: a media type is type/subtype, e.g. application/json",
                           code="invalid_media_type", details={"field": "media_type"})


def content_disposition(name: str, disposition: str = "attachment") -> str:
    """A Content-Disposition header for any stored name (RFC 6266): ``filename*`` carries the name in
    UTF-8, ``filename`` an ASCII fallback with accents dropped, other characters replaced by ``_`` and
    quotes and backslashes escaped. Never raises, so no name can break a download."""
    fallback = []
    for c in unicodedata.normalize("NFKD", name):
        if unicodedata.combining(c):
            continue
        fallback.append(c if " " <= c <= "~" else "_")
    ascii_name = "".join(fallback).replace("\\", "\\\\").replace('"', '\\"') or "download"
    utf8 = quote(name.encode("utf-8", "replace"), safe="!#$&+^`|~-._")
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{utf8}"


def register(ctx: Context, body: dict[str, Any], principal: Principal) -> tuple[dict[str, Any], bool]:
    """Register artifact metadata for a run's phase. Same (run, phase, name, sha) again returns the
    existing record; a different sha for an existing name is a conflict (artifacts are immutable). The
    content must be the run's workspace's (uploaded for it, or produced there) or uploaded by this
    account itself; else ``content_missing``, also when another workspace stored it."""
    principal.require(Action.EXECUTE)
    _check_sha(body["sha256"])
    check_name(body["name"])
    check_media_type(body["media_type"])
    with ctx.db.write() as conn:
        run = queue.get_run(conn, body["run_id"])
        if run is None or not principal.can_see(run["workspace_id"]):
            raise NotFound(f"run {body['run_id']} not found", code="run_not_found")
        names = {p["name"] for p in queue.run_phases(conn, body["run_id"])}
        if body["phase"] not in names:
            raise NotFound(f"run has no phase {body['phase']!r}", code="phase_not_found")
        # only content this workspace uploaded or produced, or that this account uploaded itself: a
        # blob stored for another workspace is as missing as one never uploaded (no existence oracle)
        owned = store.owns(conn, run["workspace_id"], body["sha256"])
        proven = not owned and principal.user_id is not None \
            and store.uploaded_by(conn, principal.user_id, body["sha256"])
        blob = store.blob(conn, body["sha256"]) if owned or proven else None
        if blob is not None and blob.size_bytes != body["size_bytes"]:
            raise InvalidInput(f"size_bytes {body['size_bytes']} does not match the stored content "
                               f"({blob.size_bytes} bytes)", code="size_mismatch")
        if blob is None and not body.get("uri"):
            raise Conflict("upload the content with PUT /ops/artifacts/{sha256}?run_id=… first, or give a uri",
                           code="content_missing")
        existing = store.find(conn, body["run_id"], body["phase"], body["name"])
        if existing is not None:
            if existing.sha256 != body["sha256"]:
                raise Conflict(f"artifact {body['name']!r} is already registered with another sha256",
                               code="artifact_immutable")
            return render(existing), False
        now = ctx.clock()
        row = store.insert(
            conn, run_id=body["run_id"], phase=body["phase"], name=body["name"], sha256=body["sha256"],
            size_bytes=body["size_bytes"], media_type=body["media_type"],
            uri=body.get("uri") or (blob.uri if blob else None), metadata=body.get("metadata") or {}, now=now)
        if proven and blob is not None:
            store.own(conn, run["workspace_id"], body["sha256"], body["run_id"], now)
        queue.append_events(conn, body["run_id"], [{
            "type": EventType.ARTIFACT_REGISTERED.value, "ts": now, "level": "info", "phase": body["phase"],
            "message": f"artifact {body['name']} ({body['size_bytes']} bytes)",
            "payload": {"name": body["name"], "sha256": body["sha256"], "size_bytes": body["size_bytes"],
                        "media_type": body["media_type"]},
        }])
    ctx.waker.run_event(body["run_id"])
    return render(row), True


def render(row: store.ArtifactRow) -> dict[str, Any]:
    return {"id": row.id, "run_id": row.run_id, "phase": row.phase, "name": row.name,
            "sha256": row.sha256, "size_bytes": row.size_bytes, "media_type": row.media_type,
            "uri": row.uri, "metadata": row.metadata, "created_at": row.created_at}


def list_for_run(ctx: Context, run_id: str, principal: Principal) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        run = queue.get_run(conn, run_id)
        if run is None or not principal.can_see(run["workspace_id"]):
            raise NotFound(f"run {run_id} not found", code="run_not_found")
        return [render(r) for r in store.of_run(conn, run_id)]


def open_blob(ctx: Context, sha256: str, principal: Principal) -> tuple[dict[str, Any], Generator[bytes, None, None]]:
    """Content of a blob the principal may see (referenced by a run in one of its workspaces), with what
    to serve it as (media type, name, size). A blob nobody visible references is a 404 like one that
    does not exist, before the store is asked anything."""
    _check_sha(sha256)
    with ctx.db.read() as conn:
        uses = store.uses_of_blob(conn, principal.workspace_ids, sha256)
        known = store.blob(conn, sha256) if uses else None
    if not uses:
        raise NotFound(f"artifact {sha256} not found", code="artifact_not_found")
    content = store_for(ctx).open(sha256)
    if content is None:
        raise NotFound(f"artifact {sha256} not found", code="artifact_not_found")
    media_type = uses[0].media_type
    if not MEDIA_TYPE_RE.fullmatch(media_type):  # registered before names and types were checked
        media_type = "application/octet-stream"
    return {"media_type": media_type, "name": uses[0].name,
            "size_bytes": known.size_bytes if known is not None else None}, content
