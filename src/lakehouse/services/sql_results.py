"""Query results: streamed into a Parquet blob with a preview capped in rows and bytes, kept for a while.

Results are content-addressed blobs in ``LAKEHOUSE_HOME/artifacts`` (the same store as artifacts).
:func:`sweep` runs after each stored result of a workspace: results older than
``LAKEHOUSE_SQL_RESULT_RETENTION_DAYS`` expire, then the oldest beyond the workspace's
``LAKEHOUSE_SQL_RESULT_QUOTA_BYTES`` (the result just stored is kept, even alone over the quota). An
expired query keeps its history row (SQL, who, when, rows, snapshots, hash) with ``result_expired_at``
set; its file is deleted once no live query result and no artifact names the same content.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import orjson
import pyarrow as pa

from lakehouse.lake import blobs
from lakehouse.lake.blobstore import BlobStore
from lakehouse.services.context import Context
from lakehouse.store import sql_history as store

log = logging.getLogger("lakehouse.sql")
_BATCH = 500


class ResultSink:
    """Streams result batches into a Parquet file in the blob store and keeps a preview of at most
    ``limit`` rows and ``max_bytes`` bytes of JSON."""

    def __init__(self, ctx: Context, limit_preview: int, max_bytes: int | None = None) -> None:
        self.store = BlobStore(ctx.settings.artifacts_dir)
        self.path = blobs.temp_path(self.store, ".parquet")
        self.limit = limit_preview
        self.max_bytes = ctx.settings.sql_preview_max_bytes if max_bytes is None else max_bytes
        self.preview: list[list[Any]] = []
        self.preview_bytes = 2  # "[]"
        self.capped = False  # the byte cap stopped the preview
        self.count = 0
        self._writer: Any = None

    def open(self, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        self._writer = pq.ParquetWriter(self.path, schema, compression="zstd")

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self._writer.write_batch(batch)
        self.count += batch.num_rows
        if len(self.preview) >= self.limit or self.capped:
            return
        from lakehouse.services.sql import jsonable

        take = batch.slice(0, self.limit - len(self.preview))
        cols = [take.column(i).to_pylist() for i in range(take.num_columns)]
        for row in zip(*cols, strict=True):
            values = [jsonable(v) for v in row]
            size = _json_size(values) + 1  # and its comma
            if self.preview_bytes + size > self.max_bytes:
                self.capped = True
                return
            self.preview.append(values)
            self.preview_bytes += size

    def finish(self, columns: list[dict[str, str]], reads: list[dict[str, Any]]) -> dict[str, Any]:
        self._writer.close()
        self._writer = None
        sha, size = blobs.put_file(self.store, self.path)
        truncated = self.count > len(self.preview)
        return {"columns": columns, "rows": self.preview, "row_count": self.count, "truncated": truncated,
                "truncated_by": ("bytes" if self.capped else "rows") if truncated else None,
                "snapshot_ids": reads, "result_sha256": sha, "_size": size, "_uri": self.store.uri(sha)}

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.path.unlink(missing_ok=True)


def _json_size(values: list[Any]) -> int:
    try:
        return len(orjson.dumps(values))
    except TypeError:  # integers past 64 bits
        import json

        return len(json.dumps(values, default=str))


# --- retention and quota -------------------------------------------------------------------------


def sweep(ctx: Context, workspace_id: int, *, keep: int | None = None) -> list[int]:
    """Expire the workspace's stored results past retention, then the oldest beyond its quota (never
    query ``keep``); delete the files no one else names. Returns the expired query ids."""
    s = ctx.settings
    now = ctx.clock()
    victims: dict[int, str] = {}
    with ctx.db.write() as conn:
        cutoff = now - timedelta(days=s.sql_result_retention_days)
        for r in store.results_started_before(conn, workspace_id, cutoff, keep=keep):
            victims[r.query_id] = r.sha256
        store.expire_results(conn, victims, now)
        over = store.live_result_bytes(conn, workspace_id) - s.sql_result_quota_bytes
        after = 0
        while over > 0:
            batch = store.oldest_results(conn, workspace_id, after=after, limit=_BATCH, keep=keep)
            if not batch:
                break
            chosen: dict[int, str] = {}
            for r in batch:
                if over <= 0:
                    break
                chosen[r.query_id] = r.sha256
                over -= r.size_bytes or 0
            store.expire_results(conn, chosen, now)
            victims.update(chosen)
            after = batch[-1].query_id
        orphans = sorted({sha for sha in victims.values() if not store.is_named(conn, sha)})
        store.forget_blobs(conn, orphans)
    blob_store = BlobStore(s.artifacts_dir)
    for sha in orphans:
        blob_store.path(sha).unlink(missing_ok=True)
    if victims:
        log.info("expired stored query results", extra={"workspace_id": workspace_id, "queries": len(victims),
                                                         "files_deleted": len(orphans)})
    return sorted(victims)
