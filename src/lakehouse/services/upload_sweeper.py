"""The upload sweeper: removes what cut-off uploads and crashed processes left in the artifact stores.

An upload is streamed to a temporary file (object) and moved to its content address only once its
sha256 matched; the request that fails cleans up after itself, but a killed process cannot. Inside
``serve``/``up`` the leader's background loop (``api/app.py``'s reaper, once per cluster) calls
:func:`run_pass`: every quarter of ``LAKEHOUSE_UPLOAD_SWEEP_AGE_S`` (at most every 15 minutes) it
sweeps the local store (always there: stored query results are written to it) and the S3 artifact
store when one is configured, removing leftovers idle longer than the age. The age must exceed the
body-read timeout and the query timeout (settings.py refuses less), so a file or multipart upload
still being written is never touched. Each pass logs one structured line, ``upload sweep``, with the
counts per store.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from lakehouse.lake.blobstore import ArtifactStore, StoreUnavailable, Swept
from lakehouse.services import artifacts
from lakehouse.services.context import Context

log = logging.getLogger("lakehouse.artifacts")

MAX_INTERVAL_S = 900.0
_lock = threading.Lock()
_last: dict[int, float] = {}  # id(ctx) → monotonic time of its last pass


def stores(ctx: Context) -> list[ArtifactStore]:
    """The stores to sweep: the local one, and the configured artifact store when it is elsewhere."""
    local = artifacts.local_store(ctx)
    found: list[ArtifactStore] = [local]
    if ctx.settings.artifact_store:
        found.append(artifacts.store_for(ctx))
    return found


def sweep(ctx: Context, now: float | None = None) -> dict[str, Swept]:
    """One sweep of every store at ``now`` (default: the clock), whatever the interval; a store that
    fails is logged and the others are still swept. Returns what each store removed."""
    age = ctx.settings.upload_sweep_age_s
    out: dict[str, Swept] = {}
    if not age:
        return out
    for store in stores(ctx):
        try:
            out[store.describe()] = store.sweep_uploads(age, now)
        except (OSError, StoreUnavailable) as exc:
            log.warning("upload sweep failed", extra={"store": store.describe(), "error": str(exc)})
        except Exception:  # a broken sweep must not stop the reaper it runs in
            log.exception("upload sweep failed", extra={"store": store.describe()})
    if out:
        counts: dict[str, Any] = {
            "age_s": age, "removed": sum(s.removed for s in out.values()),
            "bytes": sum(s.bytes for s in out.values()), "aborted": sum(s.aborted for s in out.values()),
            "kept": sum(s.kept for s in out.values()),
            "stores": {name: vars(s) for name, s in out.items()}}
        level = logging.INFO if counts["removed"] or counts["aborted"] else logging.DEBUG
        log.log(level, "upload sweep", extra=counts)
    return out


def run_pass(ctx: Context, *, force: bool = False) -> dict[str, Swept] | None:
    """:func:`sweep` when a quarter of the age (at most 15 minutes) has passed since the last pass of
    this process, else None; ``force`` sweeps now."""
    age = ctx.settings.upload_sweep_age_s
    if not age:
        return None
    with _lock:
        last = _last.get(id(ctx))
        if not force and last is not None and time.monotonic() - last < min(age / 4, MAX_INTERVAL_S):
            return None
        _last[id(ctx)] = time.monotonic()
    return sweep(ctx)
