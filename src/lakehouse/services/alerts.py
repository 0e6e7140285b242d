"""Alert rules, the routing matrix and the alerts themselves: what people manage, read, acknowledge
and resolve (docs/operations.md). Firing, clearing and the run hooks are in services/alert_fire.py,
the timed rules in services/alert_eval.py, delivery in services/notify.py.

Rules and routes need ``alert.manage``, acknowledging and resolving ``alert.respond``; reading needs
``run.read``. Every change is audited; everything is scoped to the principal's workspaces.
"""

from __future__ import annotations

import re
from typing import Any

from lakehouse.domain.alerts import (
    ALERT_ACTIVE,
    TIMED_KINDS,
    AlertKind,
    AlertStatus,
    InvalidRule,
    Severity,
    clean_params,
    severity,
)
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.services import alert_fire, audit, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, InvalidInput, NotFound
from lakehouse.store import alerts as store
from lakehouse.store import ops_reads
from lakehouse.store.types_public import Connection, IntegrityError, RowMapping

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
TEAM_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
EMAIL_RE = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+$")
CHANNEL_TYPES = ("webhook", "smtp")
DEFAULT_WINDOW_S = 3600.0


def _workspace(ctx: Context, principal: Principal, workspace: str, action: Action) -> int:
    principal.require(action)
    ws_id = workspaces.resolve_for(ctx, principal, workspace)
    principal.require_in(action, ws_id)
    return ws_id


def _ts(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


# --- rules ----------------------------------------------------------------------------------------

def render_rule(r: RowMapping) -> dict[str, Any]:
    return {"id": r["id"], "workspace": r["workspace"], "name": r["name"], "kind": r["kind"],
            "severity": r["severity"], "environment": r["environment"], "job": r["job"], "pipeline": r["pipeline"],
            "team": r["team"], "params": r["params"], "window_s": r["window_s"], "enabled": r["enabled"],
            "created_by": r["created_by"], "created_at": r["created_at"], "updated_at": r["updated_at"]}


def _check_rule(conn: Connection, ws_id: int, values: dict[str, Any]) -> dict[str, Any]:
    """The rule's stored values, or ``InvalidInput`` naming the field that is wrong."""
    try:
        params = clean_params(str(values.get("kind")), values.get("params"))
        kind = AlertKind(values["kind"])
        sev = severity(values.get("severity") or Severity.ERROR.value)
    except InvalidRule as exc:
        raise InvalidInput(str(exc), code="invalid_rule") from None
    env, job, pipeline, team = (values.get(k) or None for k in ("environment", "job", "pipeline", "team"))
    if env is not None and env not in ENVIRONMENTS:
        raise InvalidInput(f"environment must be one of {', '.join(ENVIRONMENTS)}", code="invalid_environment")
    if (kind in TIMED_KINDS or kind is AlertKind.SCORE_BELOW) and kind in TIMED_KINDS and (job or pipeline):
        raise InvalidInput(f"{kind} rules are scoped to a workspace and environment, not to a job or "
                           "pipeline", code="invalid_scope")
    if job is not None and not ops_reads.job_exists(conn, ws_id, job):
        raise InvalidInput(f"no job named {job!r} in this workspace", code="unknown_job")
    if pipeline is not None and (len(pipeline) > 200 or not pipeline.strip()):
        raise InvalidInput("pipeline is a spec slug of 1-200 characters", code="invalid_scope")
    if team is not None and not TEAM_RE.match(team):
        raise InvalidInput("team names use lowercase letters, digits, _ and - (1-64)", code="invalid_team")
    window = values.get("window_s")
    window = DEFAULT_WINDOW_S if window is None else window
    if isinstance(window, bool) or not isinstance(window, int | float) or not 0 <= window <= 7 * 86400:
        raise InvalidInput("window_s is a number of seconds from 0 to 604800", code="invalid_window")
    return {"kind": kind.value, "severity": sev.value, "environment": env, "job": job, "pipeline": pipeline,
            "team": team, "params": params, "window_s": float(window),
            "enabled": bool(values.get("enabled", True))}


def list_rules(ctx: Context, principal: Principal) -> list[dict[str, Any]]:
    principal.require(Action.RUN_READ)
    with ctx.db.read() as conn:
        return [render_rule(r) for r in store.list_rules(conn, principal.workspace_ids)]


def create_rule(ctx: Context, principal: Principal, workspace: str, values: dict[str, Any],
                address: str | None = None) -> dict[str, Any]:
    ws_id = _workspace(ctx, principal, workspace, Action.ALERT_MANAGE)
    name = str(values.get("name") or "")
    if not NAME_RE.match(name):
        raise InvalidInput("rule names use lowercase letters, digits, _ . - (1-100)", code="invalid_name")
    now = ctx.clock()
    try:
        with ctx.db.write() as conn:
            clean = _check_rule(conn, ws_id, values)
            rule_id = store.insert_rule(conn, workspace_id=ws_id, name=name, created_by=principal.name,
                                        created_at=now, updated_at=now, **clean)
            audit.record(conn, now, principal, "alert.rule.create", "alert_rule", name, ws_id, clean, address)
    except IntegrityError:
        raise Conflict(f"a rule named {name!r} exists in {workspace}", code="rule_exists") from None
    return get_rule(ctx, principal, rule_id)


def _rule(conn: Connection, principal: Principal, rule_id: int) -> RowMapping:
    row = store.get_rule(conn, principal.workspace_ids, rule_id)
    if row is None:
        raise NotFound(f"alert rule {rule_id} not found", code="rule_not_found")
    return row


def get_rule(ctx: Context, principal: Principal, rule_id: int) -> dict[str, Any]:
    principal.require(Action.RUN_READ)
    with ctx.db.read() as conn:
        return render_rule(_rule(conn, principal, rule_id))


def update_rule(ctx: Context, principal: Principal, rule_id: int, values: dict[str, Any],
                address: str | None = None) -> dict[str, Any]:
    """Replace a rule's settings (its name and workspace stay)."""
    principal.require(Action.ALERT_MANAGE)
    now = ctx.clock()
    with ctx.db.write() as conn:
        row = _rule(conn, principal, rule_id)
        principal.require_in(Action.ALERT_MANAGE, row["workspace_id"])
        clean = _check_rule(conn, row["workspace_id"], {**render_rule(row), **values})
        store.update_rule(conn, rule_id, updated_at=now, **clean)
        if not clean["enabled"]:  # a disabled rule watches nothing: its alerts resolve
            alert_fire.clear(conn, row, now)
        audit.record(conn, now, principal, "alert.rule.update", "alert_rule", row["name"], row["workspace_id"],
                     clean, address)
    return get_rule(ctx, principal, rule_id)


def delete_rule(ctx: Context, principal: Principal, rule_id: int, address: str | None = None) -> None:
    principal.require(Action.ALERT_MANAGE)
    with ctx.db.write() as conn:
        row = _rule(conn, principal, rule_id)
        principal.require_in(Action.ALERT_MANAGE, row["workspace_id"])
        store.delete_rule(conn, rule_id)
        audit.record(conn, ctx.clock(), principal, "alert.rule.delete", "alert_rule", row["name"],
                     row["workspace_id"], {"kind": row["kind"]}, address)


# --- the routing matrix ---------------------------------------------------------------------------

def render_route(r: RowMapping) -> dict[str, Any]:
    return {"id": r["id"], "workspace": r["workspace"], "severity": r["severity"], "team": r["team"] or None,
            "level": r["level"], "channel": r["channel"], "channel_type": r["channel_type"],
            "connection_id": r["connection_id"], "recipients": r["recipients"],
            "escalate_after_s": r["escalate_after_s"], "created_by": r["created_by"], "created_at": r["created_at"]}


def list_routes(ctx: Context, principal: Principal) -> list[dict[str, Any]]:
    principal.require(Action.RUN_READ)
    with ctx.db.read() as conn:
        return [render_route(r) for r in store.list_routes(conn, principal.workspace_ids)]


def _recipients(value: str | None, channel_type: str) -> str | None:
    if channel_type != "smtp":
        if value:
            raise InvalidInput("recipients are for email channels only", code="invalid_recipients")
        return None
    addresses = [a.strip() for a in (value or "").split(",") if a.strip()]
    if not addresses:
        raise InvalidInput("an email route needs recipients (comma-separated addresses)", code="invalid_recipients")
    bad = [a for a in addresses if not EMAIL_RE.match(a)]
    if bad or len(addresses) > 50:
        raise InvalidInput(f"not an email address: {bad[0]}" if bad else "at most 50 recipients",
                           code="invalid_recipients")
    return ", ".join(addresses)


def add_route(ctx: Context, principal: Principal, workspace: str, *, severity_: str, channel: str,
              team: str | None = None, level: int = 0, recipients: str | None = None,
              escalate_after_s: float | None = None, address: str | None = None) -> dict[str, Any]:
    """One cell of the matrix: alerts of ``severity_`` (of ``team``, or every team) at escalation
    ``level`` go to the connection named ``channel`` (a webhook or an SMTP connection of the
    workspace, any environment: the first by environment dev, stage, prod if the name repeats)."""
    ws_id = _workspace(ctx, principal, workspace, Action.ALERT_MANAGE)
    try:
        sev = severity(severity_)
    except InvalidRule as exc:
        raise InvalidInput(str(exc), code="invalid_severity") from None
    if team is not None and team != "" and not TEAM_RE.match(team):
        raise InvalidInput("team names use lowercase letters, digits, _ and - (1-64)", code="invalid_team")
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise InvalidInput("level is 0 (notified first) to 9", code="invalid_level")
    if escalate_after_s is not None and not 0 < escalate_after_s <= 7 * 86400:
        raise InvalidInput("escalate_after_s is from 1 s to 7 days", code="invalid_escalation")
    now = ctx.clock()
    with ctx.db.write() as conn:
        conn_row = _channel(conn, ws_id, channel)
        clean = _recipients(recipients, conn_row["type"])
        route_id = store.insert_route(conn, workspace_id=ws_id, severity=sev.value, team=team or "", level=level,
                                      connection_id=conn_row["id"], recipients=clean,
                                      escalate_after_s=escalate_after_s, created_by=principal.name, created_at=now)
        audit.record(conn, now, principal, "alert.route.create", "alert_route", str(route_id), ws_id,
                     {"severity": sev.value, "team": team or None, "level": level, "channel": channel,
                      "escalate_after_s": escalate_after_s}, address)
        row = store.get_route(conn, None, route_id)
    assert row is not None
    return render_route(row)


def _channel(conn: Connection, ws_id: int, channel: str) -> RowMapping:
    from lakehouse.store import connections as conn_store

    rows = [r for r in conn_store.list_visible(conn, [ws_id]) if r.name == channel]
    if not rows:
        raise InvalidInput(f"no connection named {channel!r} in this workspace", code="unknown_channel")
    rows.sort(key=lambda r: ENVIRONMENTS.index(r.environment) if r.environment in ENVIRONMENTS else 9)
    row = rows[0]
    if row.type not in CHANNEL_TYPES:
        raise InvalidInput(f"{channel} is a {row.type} connection; channels are webhook or smtp connections",
                           code="invalid_channel")
    found = store.connection_in(conn, ws_id, row.id)
    assert found is not None
    return found


def delete_route(ctx: Context, principal: Principal, route_id: int, address: str | None = None) -> None:
    principal.require(Action.ALERT_MANAGE)
    with ctx.db.write() as conn:
        row = store.get_route(conn, principal.workspace_ids, route_id)
        if row is None:
            raise NotFound(f"route {route_id} not found", code="route_not_found")
        principal.require_in(Action.ALERT_MANAGE, row["workspace_id"])
        store.delete_route(conn, route_id)
        audit.record(conn, ctx.clock(), principal, "alert.route.delete", "alert_route", str(route_id),
                     row["workspace_id"], {"severity": row["severity"], "channel": row["channel"]}, address)


# --- alerts ---------------------------------------------------------------------------------------

def render_alert(a: RowMapping) -> dict[str, Any]:
    return {"id": a["id"], "workspace": a["workspace"], "rule": a["rule"], "kind": a["kind"], "status": a["status"],
            "severity": a["severity"], "team": a["team"], "title": a["title"], "group": a["group_key"],
            "details": a["details"], "run_id": a["run_id"], "occurrences": a["occurrences"],
            "first_at": a["first_at"], "last_at": a["last_at"], "notified_at": a["notified_at"],
            "level": a["level"], "escalate_at": a["escalate_at"], "acked_by": a["acked_by"],
            "acked_at": a["acked_at"], "resolved_by": a["resolved_by"], "resolved_at": a["resolved_at"]}


def list_alerts(ctx: Context, principal: Principal, status: str | None = "active", limit: int = 100
                ) -> list[dict[str, Any]]:
    """Alerts, newest first; ``status`` is open, acknowledged, resolved, active (open or acknowledged)
    or None (all)."""
    principal.require(Action.RUN_READ)
    if status == "active":
        statuses: list[str] | None = sorted(s.value for s in ALERT_ACTIVE)
    elif status is None or status == "all":
        statuses = None
    elif status in {s.value for s in AlertStatus}:
        statuses = [status]
    else:
        raise InvalidInput("status is open, acknowledged, resolved, active or all", code="invalid_status")
    with ctx.db.read() as conn:
        return [render_alert(a) for a in store.list_alerts(conn, principal.workspace_ids, statuses,
                                                           max(1, min(limit, 1000)))]


def _alert(conn: Connection, principal: Principal, alert_id: int, lock: bool = False) -> RowMapping:
    row = store.get_alert(conn, principal.workspace_ids, alert_id, lock)
    if row is None:
        raise NotFound(f"alert {alert_id} not found", code="alert_not_found")
    return row


def get_alert(ctx: Context, principal: Principal, alert_id: int) -> dict[str, Any]:
    """One alert with its notifications and every delivery attempt."""
    principal.require(Action.RUN_READ)
    with ctx.db.read() as conn:
        out = render_alert(_alert(conn, principal, alert_id))
        notes = store.notifications_of(conn, alert_id)
        tries: dict[int, list[dict[str, Any]]] = {}
        for t in store.attempts_of(conn, [n["id"] for n in notes]):
            tries.setdefault(t["notification_id"], []).append(
                {"attempt": t["attempt"], "at": t["at"], "ok": t["ok"], "status_code": t["status_code"],
                 "error": t["error"], "duration_ms": t["duration_ms"]})
    out["notifications"] = [{"id": n["id"], "channel": n["channel"], "event": n["event"], "level": n["level"],
                             "recipients": n["recipients"], "status": n["status"], "attempts": tries.get(n["id"], []),
                             "created_at": n["created_at"], "sent_at": n["sent_at"], "last_error": n["last_error"]}
                            for n in notes]
    return out


def acknowledge(ctx: Context, principal: Principal, alert_id: int, address: str | None = None) -> dict[str, Any]:
    """Someone is on it: no escalation, no repeats; it still resolves (by hand or by itself)."""
    principal.require(Action.ALERT_RESPOND)
    now = ctx.clock()
    with ctx.db.write() as conn:
        row = _alert(conn, principal, alert_id, lock=True)
        principal.require_in(Action.ALERT_RESPOND, row["workspace_id"])
        if not store.set_alert_status(conn, alert_id, [AlertStatus.OPEN.value], status=AlertStatus.ACKNOWLEDGED.value,
                                      acked_by=principal.name, acked_at=now, escalate_at=None):
            raise Conflict(f"alert {alert_id} is {row['status']}, not open", code="alert_not_open")
        audit.record(conn, now, principal, "alert.acknowledge", "alert", str(alert_id), row["workspace_id"],
                     {"rule": row["rule"], "group": row["group_key"]}, address)
    return get_alert(ctx, principal, alert_id)


def resolve(ctx: Context, principal: Principal, alert_id: int, address: str | None = None) -> dict[str, Any]:
    principal.require(Action.ALERT_RESPOND)
    now = ctx.clock()
    with ctx.db.write() as conn:
        row = _alert(conn, principal, alert_id, lock=True)
        principal.require_in(Action.ALERT_RESPOND, row["workspace_id"])
        rule = store.get_rule(conn, None, row["rule_id"])
        assert rule is not None
        if not alert_fire.resolve_alert(conn, row, rule, now, principal.name):
            raise Conflict(f"alert {alert_id} is already resolved", code="alert_resolved")
        audit.record(conn, now, principal, "alert.resolve", "alert", str(alert_id), row["workspace_id"],
                     {"rule": row["rule"], "group": row["group_key"]}, address)
    return get_alert(ctx, principal, alert_id)
