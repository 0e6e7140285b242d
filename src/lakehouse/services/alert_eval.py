"""The operations pass: timed alert rules (executor silent, queue depth, oldest queued, freshness),
escalations, run scores and notification delivery, run by the server's maintenance loop.

Timed rules are evaluated against the database as it is now: each rule fires one alert per thing in
breach (a capability, an executor, a table) and resolves its alerts for things no longer in breach,
all in one transaction with the outbox rows. An open alert whose ``escalate_at`` passed goes to the
next level of the routing matrix.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lakehouse.domain.alerts import TIMED_KINDS, AlertKind, NotificationEvent, table_matches
from lakehouse.services import alert_fire, notify, scores
from lakehouse.services.context import Context
from lakehouse.services.executors import stopped_cleanly
from lakehouse.store import alerts as store
from lakehouse.store import ops_reads
from lakehouse.store.types_public import Connection, RowMapping

log = logging.getLogger("lakehouse.alerts")


def _breaches(conn: Connection, rule: RowMapping, now: datetime, executors: list[RowMapping]
              ) -> dict[str, tuple[str, dict[str, Any]]]:
    """group key → (title, details) of everything in breach of one timed rule."""
    kind, p, env = AlertKind(rule["kind"]), rule["params"], rule["environment"]
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    scope = env or "*"
    if kind in (AlertKind.QUEUE_DEPTH, AlertKind.OLDEST_QUEUED):
        rows = [r for r in ops_reads.queued_by(conn, now, rule["workspace_id"], env)
                if not p.get("capability") or r["capability"] == p["capability"]]
        cap = p.get("capability") or "*"
        if kind is AlertKind.QUEUE_DEPTH:
            depth = sum(int(r["n"]) for r in rows)
            if depth > float(p["threshold"]):
                out[f"{scope}/{cap}"] = (f"{depth} phases queued ({cap}, {scope}), over {p['threshold']:g}",
                                         {"depth": depth, "threshold": p["threshold"], "capability": cap})
        else:
            oldest = min((r["oldest"] for r in rows if r["oldest"] is not None), default=None)
            age = (now - oldest).total_seconds() if oldest is not None else 0.0
            if age > float(p["threshold_s"]):
                out[f"{scope}/{cap}"] = (f"oldest queued phase ({cap}, {scope}) waits {age:.0f} s, over "
                                         f"{p['threshold_s']:g} s", {"age_s": round(age, 1),
                                                                     "threshold_s": p["threshold_s"],
                                                                     "capability": cap})
    elif kind is AlertKind.EXECUTOR_SILENT:
        for ex in executors:
            if stopped_cleanly(ex["info"], ex["last_seen_at"]):
                continue  # it said goodbye (POST /ops/executors/{id}/stopped): not silent, stopped
            silent = (now - ex["last_seen_at"]).total_seconds()
            if float(p["silent_s"]) < silent <= float(p["forget_s"]):
                out[ex["id"]] = (f"executor {ex['id']} silent for {silent:.0f} s",
                                 {"executor_id": ex["id"], "silent_s": round(silent, 1),
                                  "last_seen_at": ex["last_seen_at"].isoformat()})
    elif kind is AlertKind.FRESHNESS_BREACHED:
        for row in ops_reads.freshness_rows(conn, None, workspace_id=rule["workspace_id"], environment=env):
            if not table_matches(p.get("table"), row["table_name"]):
                continue
            age = (now - row["newest_change_at"]).total_seconds()
            if age > float(p["slo_s"]):
                out[f"{row['environment']}/{row['table_name']}"] = (
                    f"{row['table_name']} ({row['environment']}) is {age / 60:.1f} min behind its source, over the "
                    f"{float(p['slo_s']) / 60:g} min SLO",
                    {"table": row["table_name"], "environment": row["environment"], "freshness_s": round(age, 1),
                     "slo_s": p["slo_s"], "newest_change_at": row["newest_change_at"].isoformat()})
    return out


def evaluate(ctx: Context) -> int:
    """Evaluate every enabled timed rule; returns how many alerts fired or grouped."""
    fired = 0
    with ctx.db.write() as conn:
        now = ctx.clock()
        rules = store.enabled_rules(conn, [k.value for k in TIMED_KINDS])
        executors = ops_reads.executor_rows(conn) if any(r["kind"] == AlertKind.EXECUTOR_SILENT for r in rules) \
            else []
        for rule in rules:
            breaches = _breaches(conn, rule, now, executors)
            for key, (title, details) in breaches.items():
                alert_fire.fire(conn, rule, key, title, details, now)
                fired += 1
            alert_fire.clear(conn, rule, now, keep=breaches.keys())
    return fired


def escalate(ctx: Context) -> int:
    """Send open alerts whose escalation time passed to the next level of routes; returns how many."""
    n = 0
    with ctx.db.write() as conn:
        now = ctx.clock()
        for alert in store.due_escalations(conn, now):
            level = alert["level"] + 1
            routes = store.routes_for(conn, alert["workspace_id"], alert["severity"], alert["team"], level)
            if not routes:
                store.update_alert(conn, alert["id"], escalate_at=None)
                continue
            rule = store.get_rule(conn, None, alert["rule_id"])
            assert rule is not None
            alert_fire.enqueue(conn, {**alert, "level": level}, rule, NotificationEvent.ESCALATED, routes, now)
            store.update_alert(conn, alert["id"], level=level, notified_at=now,
                               escalate_at=alert_fire.escalate_at(conn, alert["workspace_id"], alert["severity"],
                                                                  alert["team"], level, now))
            n += 1
    return n


@dataclass
class PassResult:
    fired: int = 0
    escalated: int = 0
    scored: int = 0
    delivery: notify.Delivery = field(default_factory=notify.Delivery)
    errors: list[str] = field(default_factory=list)


_last: dict[int, float] = {}
_lock = threading.Lock()


def run_pass(ctx: Context, *, force: bool = False) -> PassResult | None:
    """One operations pass (at most every ``LAKEHOUSE_ALERT_INTERVAL_S`` unless ``force``). Each step
    runs on its own: one that fails is logged and the others still run."""
    with _lock:
        last = _last.get(id(ctx))
        if not force and last is not None and time.monotonic() - last < ctx.settings.alert_interval_s:
            return None
        _last[id(ctx)] = time.monotonic()
    result = PassResult()
    steps: tuple[tuple[str, Callable[[], None]], ...] = (("evaluate", lambda: setattr(result, "fired", evaluate(ctx))),
             ("escalate", lambda: setattr(result, "escalated", escalate(ctx))),
             ("score", lambda: setattr(result, "scored", scores.score_pending(ctx))),
             ("deliver", lambda: setattr(result, "delivery", notify.deliver_due(ctx))))
    for name, step in steps:
        try:
            step()
        except Exception as exc:  # a broken step must not stop the loop or the other steps
            log.exception("operations pass step %s failed", name)
            result.errors.append(f"{name}: {type(exc).__name__}: {exc}")
    return result
