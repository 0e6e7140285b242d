"""Firing and clearing alerts, in the caller's transaction, and the hooks the run code calls.

An alert is one (rule, group) — a pipeline in an environment, a phase, a table, an executor, a
capability. Firing again while it is open or acknowledged groups onto it (``occurrences``); an open
alert is notified again only once the rule's grouping window passed since its last notification.
Every notification goes into the outbox (``notifications``) in the same transaction as the alert
row, and services/notify.py sends it. Clearing (the condition is gone) resolves the alert and tells
every channel that was told.

The queue code calls :func:`on_events` with the events it appends (inside its transaction) and
:func:`on_runs_finished` for runs a set-based statement finished; both cost one indexed query when
the workspace has no run rules.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import Any

from lakehouse.domain.alerts import (
    RUN_KINDS,
    AlertKind,
    AlertStatus,
    NotificationEvent,
    NotificationStatus,
    median,
)
from lakehouse.store import alerts as store
from lakehouse.store import ops_reads, queue
from lakehouse.store.types_public import Connection, RowMapping

_TRIGGERS = frozenset({"RUN_FAILED", "RUN_SUCCEEDED", "RUN_CANCELLED"})


# --- fire and clear -------------------------------------------------------------------------------

def _payload(conn: Connection, alert: dict[str, Any], rule: RowMapping, event: NotificationEvent) -> dict[str, Any]:
    """What a channel receives (rendered per channel type at sending): never a secret."""
    return {"type": "lakehouse.alert", "event": event.value, "alert_id": alert["id"],
            "workspace": queue.workspace_slug(conn, rule["workspace_id"]), "rule": rule["name"],
            "kind": rule["kind"], "severity": alert["severity"], "status": alert["status"],
            "title": alert["title"], "group": alert["group_key"], "occurrences": alert["occurrences"],
            "first_at": alert["first_at"].isoformat(), "last_at": alert["last_at"].isoformat(),
            "run_id": alert.get("run_id"), "details": alert.get("details") or {}, "level": alert.get("level", 0)}


def enqueue(conn: Connection, alert: dict[str, Any], rule: RowMapping, event: NotificationEvent,
             routes: Iterable[RowMapping], now: datetime) -> int:
    payload = _payload(conn, alert, rule, event)
    rows = [{"alert_id": alert["id"], "workspace_id": rule["workspace_id"], "connection_id": r["connection_id"],
             "recipients": r["recipients"], "event": event.value, "level": r["level"], "payload": payload,
             "status": NotificationStatus.PENDING.value, "attempts": 0, "next_attempt_at": now, "created_at": now}
            for r in routes]
    store.enqueue(conn, rows)
    return len(rows)


def escalate_at(conn: Connection, workspace_id: int, severity: str, team: str | None, level: int,
                now: datetime) -> datetime | None:
    """When an alert notified up to ``level`` escalates: the shortest ``escalate_after_s`` of that
    level's routes, if a next level exists."""
    if not store.routes_for(conn, workspace_id, severity, team, level + 1):
        return None
    waits = [r["escalate_after_s"] for r in store.routes_for(conn, workspace_id, severity, team, level)
             if r["escalate_after_s"] is not None]
    return now + timedelta(seconds=min(waits)) if waits else None


def fire(conn: Connection, rule: RowMapping, group_key: str, title: str, details: dict[str, Any], now: datetime,
         run_id: str | None = None) -> int:
    """Open an alert (or group onto the active one); returns its id."""
    existing = store.active_alert(conn, rule["id"], group_key)
    if existing is not None:
        alert = {**existing, "occurrences": existing["occurrences"] + 1, "last_at": now, "title": title[:2000],
                 "details": details, "run_id": run_id or existing["run_id"]}
        values: dict[str, Any] = {k: alert[k] for k in ("occurrences", "last_at", "title", "details", "run_id")}
        window = timedelta(seconds=float(rule["window_s"]))
        due = existing["notified_at"] is None or now - existing["notified_at"] >= window
        if existing["status"] == AlertStatus.OPEN.value and due:
            routes = [r for r in store.routes_for(conn, rule["workspace_id"], existing["severity"], existing["team"])
                      if r["level"] <= existing["level"]]
            if enqueue(conn, alert, rule, NotificationEvent.REPEATED, routes, now):
                values["notified_at"] = now
        store.update_alert(conn, existing["id"], **values)
        return int(existing["id"])
    routes = store.routes_for(conn, rule["workspace_id"], rule["severity"], rule["team"], 0)
    alert = {"workspace_id": rule["workspace_id"], "rule_id": rule["id"], "group_key": group_key[:300],
             "status": AlertStatus.OPEN.value, "severity": rule["severity"], "team": rule["team"],
             "title": title[:2000], "details": details, "run_id": run_id, "occurrences": 1, "first_at": now,
             "last_at": now, "notified_at": now if routes else None, "level": 0,
             "escalate_at": escalate_at(conn, rule["workspace_id"], rule["severity"], rule["team"], 0, now)}
    alert["id"] = store.insert_alert(conn, **alert)
    enqueue(conn, alert, rule, NotificationEvent.FIRED, routes, now)
    return int(alert["id"])


def resolve_alert(conn: Connection, alert: RowMapping, rule: RowMapping, now: datetime, by: str) -> bool:
    """Resolve an active alert and tell every channel that was told; False if it was not active."""
    if not store.set_alert_status(conn, alert["id"], [AlertStatus.OPEN.value, AlertStatus.ACKNOWLEDGED.value],
                                  status=AlertStatus.RESOLVED.value, resolved_by=by, resolved_at=now,
                                  escalate_at=None):
        return False
    if alert["notified_at"] is not None:
        routes = [r for r in store.routes_for(conn, alert["workspace_id"], alert["severity"], alert["team"])
                  if r["level"] <= alert["level"]]
        enqueue(conn, {**alert, "status": AlertStatus.RESOLVED.value}, rule, NotificationEvent.RESOLVED, routes,
                 now)
    return True


def clear(conn: Connection, rule: RowMapping, now: datetime, group_key: str | None = None,
          prefix: str | None = None, keep: Collection[str] = ()) -> int:
    """Auto-resolve the rule's active alerts of ``group_key`` (or whose key starts with ``prefix``, or
    all but ``keep``): the condition cleared. Returns how many were resolved."""
    n = 0
    for alert in store.active_alerts_of_rule(conn, rule["id"]):
        key = alert["group_key"]
        if group_key is not None and key != group_key:
            continue
        if prefix is not None and not key.startswith(prefix):
            continue
        if key in keep:
            continue
        n += resolve_alert(conn, alert, rule, now, "auto")
    return n


# --- run hooks ------------------------------------------------------------------------------------

def matches(rule: RowMapping, run: RowMapping, job: str | None) -> bool:
    return ((rule["environment"] is None or rule["environment"] == run["environment"])
            and (rule["pipeline"] is None or rule["pipeline"] == run["spec_slug"])
            and (rule["job"] is None or rule["job"] == job))


def subject_of(run: RowMapping, job: str | None) -> str:
    return f"{run['environment']}/{job or run['spec_slug']}"


def on_events(conn: Connection, run_id: str, events: Iterable[dict[str, Any]], now: datetime) -> None:
    """Evaluate the run rules for events being appended to a run, in the caller's transaction."""
    types = {e["type"] for e in events}
    if types & _TRIGGERS:
        _on_finish(conn, run_id, list(events), now)


def on_runs_finished(conn: Connection, run_ids: Iterable[str], now: datetime) -> None:
    """The same for runs a set-based statement finished (their events are not at hand): one query
    for the whole batch finds the runs whose workspace has an enabled run rule; only those are
    evaluated (the hot path of the queue pays nothing more when no run rule exists)."""
    ids = list(run_ids)
    if not ids:
        return
    for run_id in store.runs_with_run_rules(conn, RUN_KINDS, ids):
        _on_finish(conn, run_id, None, now)


def _on_finish(conn: Connection, run_id: str, events: list[dict[str, Any]] | None, now: datetime) -> None:
    run = queue.get_run(conn, run_id)
    if run is None:
        return
    rules = store.enabled_rules(conn, RUN_KINDS, run["workspace_id"])
    if not rules:
        return
    job = ops_reads.job_of_run(conn, run_id) if any(r["job"] for r in rules) else None
    subject = subject_of(run, job)
    for rule in rules:
        if not matches(rule, run, job):
            continue
        kind = AlertKind(rule["kind"])
        if kind is AlertKind.RUN_FAILED:
            _run_failed(conn, rule, run, subject, now)
        elif kind is AlertKind.RETRIES_EXHAUSTED:
            _retries_exhausted(conn, rule, run, subject, events, now)
        elif kind is AlertKind.DQ_FAILED:
            _dq_failed(conn, rule, run, subject, now)
        elif kind is AlertKind.DURATION_OVER_BASELINE:
            _duration(conn, rule, run, subject, now)


def _run_failed(conn: Connection, rule: RowMapping, run: RowMapping, subject: str, now: datetime) -> None:
    if run["status"] == "failed":
        fire(conn, rule, subject, f"run of {subject} failed: {(run['error'] or '')[:300]}",
             {"run_id": run["id"], "error": (run["error"] or "")[:1000]}, now, run["id"])
    elif run["status"] == "succeeded":
        clear(conn, rule, now, group_key=subject)


def _retries_exhausted(conn: Connection, rule: RowMapping, run: RowMapping, subject: str,
                       events: list[dict[str, Any]] | None, now: datetime) -> None:
    if run["status"] == "succeeded":
        clear(conn, rule, now, prefix=subject + "/")
        return
    if run["status"] != "failed":
        return
    for p in queue.run_phases(conn, run["id"]):
        if p["status"] == "failed" and p["max_attempts"] > 1 and p["attempt"] >= p["max_attempts"]:
            fire(conn, rule, f"{subject}/{p['name']}",
                 f"{p['name']} of {subject} failed after {p['attempt']} attempts: {(p['error'] or '')[:300]}",
                 {"run_id": run["id"], "phase": p["name"], "attempts": p["attempt"],
                  "error": (p["error"] or "")[:1000]}, now, run["id"])


def _dq_failed(conn: Connection, rule: RowMapping, run: RowMapping, subject: str, now: datetime) -> None:
    warn = bool(rule["params"].get("include_warnings"))
    failed = [r for r in ops_reads.dq_results(conn, run["id"])
              if r.get("passed") is False and (warn or r.get("severity") == "error")]
    if failed:
        summary = "; ".join(f"{r.get('type')} on {r.get('table')}: {str(r.get('message'))[:120]}" for r in failed[:5])
        fire(conn, rule, subject, f"{len(failed)} data-quality check(s) failed in {subject}: {summary}",
             {"run_id": run["id"], "failed": [{k: r.get(k) for k in ("type", "table", "severity", "message")}
                                              for r in failed[:20]]}, now, run["id"])
    elif run["status"] == "succeeded":
        clear(conn, rule, now, group_key=subject)


def run_seconds(row: RowMapping) -> float | None:
    if row["started_at"] is None or row["finished_at"] is None:
        return None
    elapsed: timedelta = row["finished_at"] - row["started_at"]
    return elapsed.total_seconds()


def _duration(conn: Connection, rule: RowMapping, run: RowMapping, subject: str, now: datetime) -> None:
    if run["status"] != "succeeded":
        return
    took = run_seconds(run)
    params = rule["params"]
    history = [s for s in (run_seconds(r) for r in ops_reads.previous_successes(conn, run, int(params["history"])))
               if s is not None]
    if took is None or len(history) < int(params["min_history"]):
        return
    baseline = median(history)
    assert baseline is not None
    if baseline > 0 and took > float(params["k"]) * baseline:
        fire(conn, rule, subject, f"run of {subject} took {took:.1f} s, over {params['k']} x its baseline "
                                  f"{baseline:.1f} s", {"run_id": run["id"], "duration_s": round(took, 3),
                                                       "baseline_s": round(baseline, 3), "k": params["k"]},
             now, run["id"])
    else:
        clear(conn, rule, now, group_key=subject)
