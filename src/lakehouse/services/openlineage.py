"""OpenLineage run events for every phase that reads or writes tables, so Marquez, DataHub or any
OpenLineage consumer sees our lineage.

When a phase completes, :func:`on_manifest` (called in the transaction that records the phase's
manifest) builds one ``COMPLETE`` run event from the manifest — input datasets from its ``lineage``
(``inputs`` and every edge's inputs) and a transform's ``edges``, output datasets from its ``lineage``
outputs and every table it committed (with the snapshot id as the dataset version and the rows as
output statistics) — and hands it to the process's emitter. A phase that touched no table emits
nothing.

The emitter (:func:`install`, at the edge that builds the settings) sends events with
openlineage-python's transports: a file (``LAKEHOUSE_OPENLINEAGE_FILE``, one JSON event a line) and an
HTTP receiver (``LAKEHOUSE_OPENLINEAGE_URL`` + ``LAKEHOUSE_OPENLINEAGE_ENDPOINT``, bearer
``LAKEHOUSE_OPENLINEAGE_API_KEY``). Sending happens on one background thread from a bounded queue,
never inside the caller's database transaction, and a receiver that is down never fails a phase:
the event is logged and dropped (delivery is at most once).

Names: the job is ``<spec_slug>.<phase>`` in namespace ``LAKEHOUSE_OPENLINEAGE_NAMESPACE``; its
parent is the run (job ``<spec_slug>``); run ids are UUIDs derived from our run id, phase and attempt
(stable across emitters). A dataset is ``<layer>_<env>.<table>`` — the name Trino and Spark give it
through our REST catalog — in namespace ``<namespace>/<workspace>``.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

log = logging.getLogger("lakehouse.openlineage")

PRODUCER = "https://lakehouse-control-room.invalid/lakehouse"
_RUN_NS = uuid.UUID("6f1d2c1e-1b7a-4b0e-9a53-3c6a1f0d8e21")
_LAYERS = ("bronze", "silver", "gold")


# --- what a manifest says -----------------------------------------------------------------------------


def tables_of(manifest: Mapping[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """(tables read, {table written: its output entry}) of a phase's manifest; names are ``layer.table``."""
    reads: set[str] = set()
    writes: dict[str, dict[str, Any]] = {}
    lineage = manifest.get("lineage") if isinstance(manifest.get("lineage"), dict) else {}
    assert isinstance(lineage, dict)
    edges = list(lineage.get("edges") or []) + list(manifest.get("edges") or [])
    reads.update(str(t) for t in lineage.get("inputs") or [])
    for edge in edges:
        if isinstance(edge, dict):
            reads.update(str(t) for t in edge.get("inputs") or [])
    for t in lineage.get("outputs") or []:
        writes.setdefault(str(t), {})
    for edge in lineage.get("edges") or []:
        if isinstance(edge, dict):
            for t in edge.get("outputs") or []:
                writes.setdefault(str(t), {})
    outputs = manifest.get("outputs")
    if isinstance(outputs, dict):
        for t, entry in outputs.items():
            if isinstance(entry, dict) and entry.get("snapshot_id") is not None:
                writes[str(t)] = entry
    tables = {t for t in [*reads, *writes] if t.split(".", 1)[0] in _LAYERS}
    return sorted(t for t in reads if t in tables), {t: writes[t] for t in sorted(writes) if t in tables}


def dataset_name(table: str, env: str) -> str:
    layer, _, name = table.partition(".")
    return f"{layer}_{env}.{name}"


def run_uuid(run_id: str, phase: str | None = None, attempt: int | None = None) -> str:
    key = run_id if phase is None else f"{run_id}/{phase}/{attempt or 1}"
    return str(uuid.uuid5(_RUN_NS, key))


def phase_event(namespace: str, *, run_id: str, spec_slug: str, workspace: str, env: str, phase: str,
                attempt: int | None, manifest: Mapping[str, Any], now: datetime, state: str = "COMPLETE") -> Any:
    """The OpenLineage ``RunEvent`` of one phase, or None when it read and wrote no table."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import dataset_version_dataset, job_type_job, parent_run
    from openlineage.client.facet_v2 import output_statistics_output_dataset as out_stats

    reads, writes = tables_of(manifest)
    if not reads and not writes:
        return None
    ds_ns = f"{namespace}/{workspace}"
    outputs = []
    for table, entry in writes.items():
        facets: dict[str, Any] = {}
        out_facets: dict[str, Any] = {}
        if entry.get("snapshot_id") is not None:
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=str(entry["snapshot_id"]))
        if isinstance(entry.get("rows"), int):
            out_facets["outputStatistics"] = out_stats.OutputStatisticsOutputDatasetFacet(rowCount=entry["rows"])
        outputs.append(OutputDataset(namespace=ds_ns, name=dataset_name(table, env), facets=facets,
                                     outputFacets=out_facets))
    return RunEvent(
        eventType=RunState[state], eventTime=now.isoformat(), producer=PRODUCER,
        run=Run(runId=run_uuid(run_id, phase, attempt), facets={"parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=run_uuid(run_id)), job=parent_run.Job(namespace=namespace, name=spec_slug))}),
        job=Job(namespace=namespace, name=f"{spec_slug}.{phase}", facets={"jobType": job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="LAKEHOUSE", jobType="TASK")}),
        inputs=[InputDataset(namespace=ds_ns, name=dataset_name(t, env)) for t in reads],
        outputs=outputs)


# --- the emitter ------------------------------------------------------------------------------------


class Emitter:
    """Sends events to the configured transports from one background thread."""

    def __init__(self, transports: list[Any], namespace: str, max_queue: int = 10_000) -> None:
        self.transports = transports
        self.namespace = namespace
        self._queue: queue.Queue[Any] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._loop, name="openlineage", daemon=True)
        self._thread.start()

    def submit(self, event: Any) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.warning("openlineage queue full: event dropped")

    def _loop(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is None:
                    return
                for transport in self.transports:
                    try:
                        transport.emit(event)
                    except Exception as exc:  # a receiver that is down never fails a phase
                        log.warning("openlineage %s transport failed: %s", getattr(transport, "kind", "?"),
                                    f"{type(exc).__name__}: {str(exc)[:200]}")
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until every submitted event was sent (or given up)."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)


_emitter: Emitter | None = None
_lock = threading.Lock()


def transports_for(settings: Any) -> list[Any]:
    out: list[Any] = []
    if settings.openlineage_file:
        from openlineage.client.transport.file import FileConfig, FileTransport

        out.append(FileTransport(FileConfig(log_file_path=settings.openlineage_file, append=True)))
    if settings.openlineage_url:
        from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

        config = HttpConfig(url=settings.openlineage_url, endpoint=settings.openlineage_endpoint, timeout=5.0,
                            retry={"total": 2, "connect": 2, "read": 2, "backoff_factor": 0.2,
                                   "status_forcelist": [500, 502, 503, 504], "allowed_methods": ["POST"]})
        if settings.openlineage_api_key:
            config.auth = ApiKeyTokenProvider({"api_key": settings.openlineage_api_key})
        out.append(HttpTransport(config))
    return out


def install(settings: Any) -> Emitter | None:
    """Configure this process's emitter from the settings (None, and no thread, when no transport is
    set). Called where the settings are built (the app factory, a worker, a test)."""
    global _emitter
    with _lock:
        if _emitter is not None:
            _emitter.close()
            _emitter = None
        transports = transports_for(settings)
        if transports:
            _emitter = Emitter(transports, settings.openlineage_namespace)
        return _emitter


def uninstall() -> None:
    global _emitter
    with _lock:
        if _emitter is not None:
            _emitter.flush()
            _emitter.close()
        _emitter = None


def flush() -> None:
    if _emitter is not None:
        _emitter.flush()


def on_manifest(conn: Any, run: Any, phase: str, manifest: Mapping[str, Any], now: datetime,
                attempt: int | None = None) -> bool:
    """Emit the phase's run event (when an emitter is installed and the phase touched tables); True when
    one was queued. Called in the transaction that records the phase's manifest; sends nothing there."""
    emitter = _emitter
    if emitter is None:
        return False
    from lakehouse.store import workspaces as ws_store

    try:
        workspace = ws_store.get(conn, run["workspace_id"]).slug
        event = phase_event(emitter.namespace, run_id=run["id"], spec_slug=run["spec_slug"], workspace=workspace,
                            env=run["environment"], phase=phase, attempt=attempt, manifest=manifest, now=now)
    except Exception:  # lineage never fails the phase
        log.exception("building an openlineage event failed", extra={"run_id": run["id"], "phase": phase})
        return False
    if event is None:
        return False
    emitter.submit(event)
    return True
