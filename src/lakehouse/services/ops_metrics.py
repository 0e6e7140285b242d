"""/metrics and /ready: every series computed from the database when it is scraped (no counter in
memory that a restart resets or that differs between server processes), in the Prometheus text
format of prometheus-client. docs/operations.md lists the series.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from lakehouse.services.context import Context
from lakehouse.store import alerts as alert_store
from lakehouse.store import ops_reads

# enqueue→start waits and phase run times, in seconds
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)
HISTOGRAM_WINDOW = timedelta(hours=24)
HISTOGRAM_LIMIT = 20_000  # newest phases the histograms look at


def _buckets(values: list[float], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    out = [(str(b), float(sum(1 for v in values if v <= b))) for b in bounds]
    out.append(("+Inf", float(len(values))))
    return out


class _Collector:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        now = self.ctx.clock()
        with self.ctx.db.read() as conn:
            queued = ops_reads.queued_by(conn, now)
            outcomes = ops_reads.phase_outcomes(conn)
            expirations = ops_reads.lease_expirations(conn)
            retries = ops_reads.retries(conn)
            notes = alert_store.notification_counts(conn)
            attempts = alert_store.attempt_counts(conn)
            active = alert_store.count_active(conn)
            fresh = ops_reads.freshness_rows(conn, None)
            recent = ops_reads.recent_phases(conn, now - HISTOGRAM_WINDOW, HISTOGRAM_LIMIT)
            executors = ops_reads.executor_rows(conn)

        depth = GaugeMetricFamily("lakehouse_queue_depth", "Runnable queued phases", labels=["capability"])
        oldest = GaugeMetricFamily("lakehouse_queue_oldest_age_seconds", "Age of the oldest runnable queued phase",
                                   labels=["capability"])
        for r in queued:
            depth.add_metric([r["capability"]], float(r["n"]))
            age = (now - r["oldest"]).total_seconds() if r["oldest"] is not None else 0.0
            oldest.add_metric([r["capability"]], max(0.0, age))
        yield depth
        yield oldest

        out = CounterMetricFamily("lakehouse_phase_outcomes", "Finished phases by type and status",
                                  labels=["type", "status"])
        for r in outcomes:
            out.add_metric([r["type"], r["status"]], float(r["n"]))
        yield out
        yield CounterMetricFamily("lakehouse_lease_expirations", "Leases that expired", value=float(expirations))
        yield CounterMetricFamily("lakehouse_phase_retries", "Phase attempts beyond the first", value=float(retries))

        by_status = GaugeMetricFamily("lakehouse_notifications", "Notifications in the outbox by status and channel",
                                      labels=["status", "channel"])
        for note in notes:
            by_status.add_metric([note["status"], note["channel"]], float(note["n"]))
        yield by_status
        ok = {bool(r["ok"]): float(r["n"]) for r in attempts}
        yield CounterMetricFamily("lakehouse_notifications_sent", "Delivery attempts that succeeded",
                                  value=ok.get(True, 0.0))
        yield CounterMetricFamily("lakehouse_notifications_failed", "Delivery attempts that failed",
                                  value=ok.get(False, 0.0))
        alerts = GaugeMetricFamily("lakehouse_alerts_active", "Open and acknowledged alerts",
                                   labels=["severity", "status"])
        for r in active:
            alerts.add_metric([r["severity"], r["status"]], float(r["n"]))
        yield alerts

        freshness = GaugeMetricFamily("lakehouse_table_freshness_seconds",
                                      "Now minus the newest source change a published table contains",
                                      labels=["workspace", "environment", "table"])
        for r in fresh:
            freshness.add_metric([r["workspace"], r["environment"], r["table_name"]],
                                 (now - r["newest_change_at"]).total_seconds())
        yield freshness

        stale_s = self.ctx.settings.executor_stale_s
        live = sum(1 for e in executors if (now - e["last_seen_at"]).total_seconds() <= stale_s)
        ex = GaugeMetricFamily("lakehouse_executors", "Executors by liveness", labels=["state"])
        ex.add_metric(["live"], float(live))
        ex.add_metric(["stale"], float(len(executors) - live))
        yield ex

        waits = [(p["started_at"] - (p["available_at"] or p["run_created_at"])).total_seconds() for p in recent]
        waits = [max(0.0, w) for w in waits]
        hist = HistogramMetricFamily("lakehouse_phase_queue_wait_seconds",
                                     "Enqueue to start of phases started in the last 24 h")
        hist.add_metric([], _buckets(waits, WAIT_BUCKETS), sum(waits))
        yield hist
        durations: dict[str, list[float]] = {}
        for p in recent:
            if p["finished_at"] is not None:
                took = (p["finished_at"] - p["started_at"]).total_seconds()
                durations.setdefault(p["type"], []).append(max(0.0, took))
        dur = HistogramMetricFamily("lakehouse_phase_duration_seconds",
                                    "Run time of phases started in the last 24 h, by type", labels=["type"])
        for type_, values in sorted(durations.items()):
            dur.add_metric([type_], _buckets(values, DURATION_BUCKETS), sum(values))
        yield dur


def render_metrics(ctx: Context) -> tuple[bytes, str]:
    """(body, content type) of one scrape."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(ctx))
    return generate_latest(registry), CONTENT_TYPE_LATEST


_at_head: dict[str, bool] = {}


def readiness(ctx: Context, *, scheduler_expected: bool = True) -> tuple[bool, dict[str, Any]]:
    """(ready, checks): the database answers, its schema is at the newest migration, and the
    scheduler thread of this process is alive (when this process runs one)."""
    checks: dict[str, Any] = {}
    try:
        with ctx.db.read() as conn:
            ops_reads.ping(conn)
        checks["database"] = True
    except Exception as exc:  # the answer is the check, not a 500
        checks["database"] = False
        checks["database_error"] = type(exc).__name__
    if checks["database"]:
        if not _at_head.get(ctx.db.url):
            from lakehouse.store.migrations import is_at_head

            _at_head[ctx.db.url] = is_at_head(ctx.db.url)
        checks["migrations"] = _at_head[ctx.db.url]
    else:
        checks["migrations"] = False
    alive = any(t.name == "scheduler" and t.is_alive() for t in threading.enumerate())
    checks["scheduler"] = alive if scheduler_expected else "not run by this process"
    ready = bool(checks["database"] and checks["migrations"] and (alive or not scheduler_expected))
    return ready, checks

