"""Statements of alert rules, the routing matrix, alerts and the notification outbox
(services/alerts.py, services/alert_eval.py and services/notify.py keep the rules of the game).

Reads on behalf of a principal are scoped to its workspaces (:func:`lakehouse.store.scope.visible`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, bindparam, case, delete, func, or_, select, update

from lakehouse.domain.alerts import ALERT_ACTIVE, NOTIFICATION_DUE, AlertStatus, NotificationStatus, Severity
from lakehouse.store import dialect
from lakehouse.store.scope import visible
from lakehouse.store.tables import (
    alert_routes,
    alert_rules,
    alerts,
    connections,
    notification_attempts,
    notifications,
    runs,
)
from lakehouse.store.tables import workspaces as ws_table

_ACTIVE = sorted(s.value for s in ALERT_ACTIVE)

# --- rules ----------------------------------------------------------------------------------------


def insert_rule(conn: Connection, **values: Any) -> int:
    """Insert one rule; a name taken in the workspace raises ``IntegrityError``."""
    return int(conn.execute(alert_rules.insert().values(**values).returning(alert_rules.c.id)).scalar_one())


def update_rule(conn: Connection, rule_id: int, **values: Any) -> None:
    conn.execute(update(alert_rules).where(alert_rules.c.id == rule_id).values(**values))


def delete_rule(conn: Connection, rule_id: int) -> None:
    conn.execute(delete(alert_rules).where(alert_rules.c.id == rule_id))


def _rules_stmt(workspace_ids: Collection[int] | None) -> Any:
    stmt = select(alert_rules, ws_table.c.slug.label("workspace")).join(
        ws_table, ws_table.c.id == alert_rules.c.workspace_id)
    return visible(stmt, alert_rules.c.workspace_id, workspace_ids)


def list_rules(conn: Connection, workspace_ids: Collection[int] | None) -> list[RowMapping]:
    stmt = _rules_stmt(workspace_ids).order_by(ws_table.c.slug, alert_rules.c.name)
    return list(conn.execute(stmt).mappings())


def get_rule(conn: Connection, workspace_ids: Collection[int] | None, rule_id: int) -> RowMapping | None:
    return conn.execute(_rules_stmt(workspace_ids).where(alert_rules.c.id == rule_id)).mappings().first()


def enabled_rules(conn: Connection, kinds: Collection[str], workspace_id: int | None = None) -> list[RowMapping]:
    """Enabled rules of ``kinds`` (of one workspace, or of all)."""
    stmt = select(alert_rules).where(alert_rules.c.enabled.is_(True), alert_rules.c.kind.in_(sorted(kinds)))
    if workspace_id is not None:
        stmt = stmt.where(alert_rules.c.workspace_id == workspace_id)
    return list(conn.execute(stmt.order_by(alert_rules.c.id)).mappings())


def runs_with_run_rules(conn: Connection, kinds: Collection[str], run_ids: Collection[str]) -> list[str]:
    """Of ``run_ids``, those whose workspace has an enabled rule of ``kinds`` (one query; the
    statement is built once per set of kinds: the queue's hot path calls this for every batch)."""
    stmt = _RUNS_WITH_RULES.get(frozenset(kinds))
    if stmt is None:
        has_rule = (select(alert_rules.c.id)
                    .where(alert_rules.c.enabled.is_(True), alert_rules.c.kind.in_(sorted(kinds)),
                           alert_rules.c.workspace_id == runs.c.workspace_id)
                    .exists())
        stmt = _RUNS_WITH_RULES[frozenset(kinds)] = (
            select(runs.c.id).where(runs.c.id.in_(bindparam("ids", expanding=True)), has_rule).order_by(runs.c.id))
    found: list[Any] = list(conn.execute(stmt, {"ids": sorted(run_ids)}).scalars())
    return [str(run_id) for run_id in found]


_RUNS_WITH_RULES: dict[frozenset[str], Any] = {}


# --- routes ---------------------------------------------------------------------------------------


def insert_route(conn: Connection, **values: Any) -> int:
    return int(conn.execute(alert_routes.insert().values(**values).returning(alert_routes.c.id)).scalar_one())


def delete_route(conn: Connection, route_id: int) -> None:
    conn.execute(delete(alert_routes).where(alert_routes.c.id == route_id))


def _routes_stmt(workspace_ids: Collection[int] | None) -> Any:
    stmt = (select(alert_routes, ws_table.c.slug.label("workspace"), connections.c.name.label("channel"),
                   connections.c.type.label("channel_type"))
            .join(ws_table, ws_table.c.id == alert_routes.c.workspace_id)
            .join(connections, connections.c.id == alert_routes.c.connection_id))
    return visible(stmt, alert_routes.c.workspace_id, workspace_ids)


def list_routes(conn: Connection, workspace_ids: Collection[int] | None) -> list[RowMapping]:
    stmt = _routes_stmt(workspace_ids).order_by(ws_table.c.slug, alert_routes.c.severity, alert_routes.c.team,
                                                alert_routes.c.level, alert_routes.c.id)
    return list(conn.execute(stmt).mappings())


def get_route(conn: Connection, workspace_ids: Collection[int] | None, route_id: int) -> RowMapping | None:
    return conn.execute(_routes_stmt(workspace_ids).where(alert_routes.c.id == route_id)).mappings().first()


def routes_for(conn: Connection, workspace_id: int, severity: str, team: str | None,
               level: int | None = None) -> list[RowMapping]:
    """Routes an alert of ``severity`` and ``team`` goes to: the team's and the workspace-wide ones
    (team ''), of one level or of every level."""
    teams = ["", team] if team else [""]
    stmt = select(alert_routes).where(alert_routes.c.workspace_id == workspace_id,
                                      alert_routes.c.severity == severity, alert_routes.c.team.in_(teams))
    if level is not None:
        stmt = stmt.where(alert_routes.c.level == level)
    return list(conn.execute(stmt.order_by(alert_routes.c.level, alert_routes.c.id)).mappings())


def connection_in(conn: Connection, workspace_id: int, connection_id: int) -> RowMapping | None:
    return conn.execute(select(connections.c.id, connections.c.type, connections.c.name, connections.c.config)
                        .where(connections.c.id == connection_id,
                               connections.c.workspace_id == workspace_id)).mappings().first()


# --- alerts ---------------------------------------------------------------------------------------


def active_alert(conn: Connection, rule_id: int, group_key: str) -> RowMapping | None:
    """The open or acknowledged alert of a rule and group, locked for update on PostgreSQL."""
    stmt = select(alerts).where(alerts.c.rule_id == rule_id, alerts.c.group_key == group_key,
                                alerts.c.status.in_(_ACTIVE)).order_by(alerts.c.id.desc()).limit(1)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return conn.execute(stmt).mappings().first()


def active_alerts_of_rule(conn: Connection, rule_id: int) -> list[RowMapping]:
    stmt = select(alerts).where(alerts.c.rule_id == rule_id, alerts.c.status.in_(_ACTIVE))
    return list(conn.execute(stmt).mappings())


def insert_alert(conn: Connection, **values: Any) -> int:
    return int(conn.execute(alerts.insert().values(**values).returning(alerts.c.id)).scalar_one())


def update_alert(conn: Connection, alert_id: int, **values: Any) -> None:
    conn.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))


def set_alert_status(conn: Connection, alert_id: int, expected: Collection[str], **values: Any) -> bool:
    """Compare-and-swap on the status: False when the alert is no longer in ``expected``."""
    result = conn.execute(update(alerts).where(alerts.c.id == alert_id, alerts.c.status.in_(sorted(expected)))
                          .values(**values))
    return bool(result.rowcount == 1)


def _alerts_stmt(workspace_ids: Collection[int] | None) -> Any:
    stmt = (select(alerts, ws_table.c.slug.label("workspace"), alert_rules.c.name.label("rule"),
                   alert_rules.c.kind.label("kind"))
            .join(ws_table, ws_table.c.id == alerts.c.workspace_id)
            .join(alert_rules, alert_rules.c.id == alerts.c.rule_id))
    return visible(stmt, alerts.c.workspace_id, workspace_ids)


def list_alerts(conn: Connection, workspace_ids: Collection[int] | None, statuses: Collection[str] | None,
                limit: int) -> list[RowMapping]:
    stmt = _alerts_stmt(workspace_ids)
    if statuses:
        stmt = stmt.where(alerts.c.status.in_(sorted(statuses)))
    return list(conn.execute(stmt.order_by(alerts.c.last_at.desc(), alerts.c.id.desc()).limit(limit)).mappings())


def get_alert(conn: Connection, workspace_ids: Collection[int] | None, alert_id: int,
              lock: bool = False) -> RowMapping | None:
    stmt = _alerts_stmt(workspace_ids).where(alerts.c.id == alert_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=alerts)
    return conn.execute(stmt).mappings().first()


def due_escalations(conn: Connection, now: datetime, limit: int = 100) -> list[RowMapping]:
    stmt = select(alerts).where(alerts.c.status == AlertStatus.OPEN.value, alerts.c.escalate_at.is_not(None),
                                alerts.c.escalate_at <= now).order_by(alerts.c.escalate_at).limit(limit)
    return list(conn.execute(dialect.skip_locked(conn, stmt, alerts)).mappings())


def count_active(conn: Connection) -> list[RowMapping]:
    stmt = select(alerts.c.severity, alerts.c.status, func.count().label("n")).where(
        alerts.c.status.in_(_ACTIVE)).group_by(alerts.c.severity, alerts.c.status)
    return list(conn.execute(stmt).mappings())


# --- the outbox -----------------------------------------------------------------------------------


def enqueue(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(notifications.insert(), rows)


def due_notifications(conn: Connection, now: datetime, limit: int) -> list[RowMapping]:
    """Notifications whose next attempt is due (a ``sending`` one whose sender vanished included),
    skipping rows another delivery loop holds on PostgreSQL."""
    stmt = (select(notifications).where(notifications.c.status.in_(sorted(s.value for s in NOTIFICATION_DUE)),
                                        notifications.c.next_attempt_at <= now)
            .order_by(notifications.c.next_attempt_at, notifications.c.id).limit(limit))
    return list(conn.execute(dialect.skip_locked(conn, stmt, notifications)).mappings())


def take(conn: Connection, notification_id: int, attempts: int, until: datetime) -> bool:
    """Take one notification for an attempt (compare-and-swap on ``attempts``)."""
    result = conn.execute(update(notifications).where(
        notifications.c.id == notification_id, notifications.c.attempts == attempts,
        notifications.c.status.in_(sorted(s.value for s in NOTIFICATION_DUE)),
    ).values(status=NotificationStatus.SENDING.value, attempts=attempts + 1, next_attempt_at=until))
    return bool(result.rowcount == 1)


def finish_attempt(conn: Connection, notification_id: int, attempt: int, *, at: datetime, ok: bool,
                   status_code: int | None, error: str | None, duration_ms: float,
                   next_attempt_at: datetime | None, final_status: str) -> None:
    conn.execute(notification_attempts.insert().values(
        notification_id=notification_id, attempt=attempt, at=at, ok=ok, status_code=status_code, error=error,
        duration_ms=duration_ms))
    values: dict[str, Any] = {"status": final_status, "next_attempt_at": next_attempt_at, "last_error": error}
    if ok:
        values["sent_at"] = at
    conn.execute(update(notifications).where(notifications.c.id == notification_id,
                                             notifications.c.attempts == attempt).values(**values))


def notifications_of(conn: Connection, alert_id: int) -> list[RowMapping]:
    return list(conn.execute(select(notifications, connections.c.name.label("channel"))
                             .outerjoin(connections, connections.c.id == notifications.c.connection_id)
                             .where(notifications.c.alert_id == alert_id)
                             .order_by(notifications.c.id)).mappings())


def attempts_of(conn: Connection, notification_ids: Collection[int]) -> list[RowMapping]:
    if not notification_ids:
        return []
    return list(conn.execute(select(notification_attempts).where(
        notification_attempts.c.notification_id.in_(sorted(notification_ids)))
        .order_by(notification_attempts.c.notification_id, notification_attempts.c.attempt)).mappings())


def notification_counts(conn: Connection) -> list[dict[str, Any]]:
    """Notifications by status and the connection type of their channel (for /metrics)."""
    stmt = (select(notifications.c.status, connections.c.type.label("channel"), func.count().label("n"))
            .outerjoin(connections, connections.c.id == notifications.c.connection_id)
            .group_by(notifications.c.status, connections.c.type))
    return [{**r, "channel": r["channel"] or "deleted"} for r in conn.execute(stmt).mappings()]


def attempt_counts(conn: Connection) -> list[RowMapping]:
    stmt = select(notification_attempts.c.ok, func.count().label("n")).group_by(notification_attempts.c.ok)
    return list(conn.execute(stmt).mappings())


def pending_for_alert(conn: Connection, alert_id: int) -> int:
    stmt = select(func.count()).select_from(notifications).where(
        and_(notifications.c.alert_id == alert_id,
             or_(*[notifications.c.status == s.value for s in NOTIFICATION_DUE])))
    return int(conn.execute(stmt).scalar_one())


# --- the Control Room's Alerts page ----------------------------------------------------------------

_STATUS_RANK = {AlertStatus.OPEN.value: 0, AlertStatus.ACKNOWLEDGED.value: 1, AlertStatus.RESOLVED.value: 2}
_SEVERITY_RANK = {s.value: i for i, s in enumerate(Severity)}  # the enum lists the worst first


def _page_filter(stmt: Any, severities: Collection[str] | None, workspace_id: int | None) -> Any:
    if severities:
        stmt = stmt.where(alerts.c.severity.in_(sorted(severities)))
    if workspace_id is not None:
        stmt = stmt.where(alerts.c.workspace_id == workspace_id)
    return stmt


def alerts_page(conn: Connection, workspace_ids: Collection[int] | None, *, statuses: Collection[str] | None,
                severities: Collection[str] | None, workspace_id: int | None, limit: int) -> list[RowMapping]:
    """Alerts for the Alerts page: open first, then acknowledged, then resolved; worst severity first;
    newest first within those."""
    stmt = _page_filter(_alerts_stmt(workspace_ids), severities, workspace_id)
    if statuses:
        stmt = stmt.where(alerts.c.status.in_(sorted(statuses)))
    stmt = stmt.order_by(case(_STATUS_RANK, value=alerts.c.status, else_=9),
                         case(_SEVERITY_RANK, value=alerts.c.severity, else_=9),
                         alerts.c.last_at.desc(), alerts.c.id.desc()).limit(limit)
    return list(conn.execute(stmt).mappings())


def alert_status_counts(conn: Connection, workspace_ids: Collection[int] | None, *,
                        severities: Collection[str] | None, workspace_id: int | None) -> dict[str, int]:
    """How many alerts are in each status (under the same workspace and severity filter)."""
    stmt = visible(select(alerts.c.status, func.count().label("n")), alerts.c.workspace_id, workspace_ids)
    stmt = _page_filter(stmt, severities, workspace_id).group_by(alerts.c.status)
    return {str(r["status"]): int(r["n"]) for r in conn.execute(stmt).mappings()}


def recent_notifications(conn: Connection, alert_ids: Collection[int], per_alert: int = 3) -> list[RowMapping]:
    """The newest ``per_alert`` notifications of each alert with their channel's name and their last
    attempt (``last_ok``, ``last_code``, ``last_at``; NULL before the first one) — never the payload."""
    if not alert_ids:
        return []
    ranked = (select(notifications.c.id, notifications.c.alert_id, notifications.c.connection_id,
                     notifications.c.event, notifications.c.level, notifications.c.status,
                     notifications.c.attempts, notifications.c.created_at, notifications.c.sent_at,
                     notifications.c.last_error,
                     func.row_number().over(partition_by=notifications.c.alert_id,
                                            order_by=notifications.c.id.desc()).label("rn"))
              .where(notifications.c.alert_id.in_(sorted(alert_ids))).subquery())
    last = notification_attempts.alias("last_attempt")
    stmt = (select(ranked.c.id, ranked.c.alert_id, ranked.c.event, ranked.c.level, ranked.c.status,
                   ranked.c.attempts, ranked.c.created_at, ranked.c.sent_at, ranked.c.last_error,
                   connections.c.name.label("channel"), connections.c.type.label("channel_type"),
                   last.c.ok.label("last_ok"), last.c.status_code.label("last_code"), last.c.at.label("last_at"))
            .outerjoin(connections, connections.c.id == ranked.c.connection_id)
            .outerjoin(last, and_(last.c.notification_id == ranked.c.id, last.c.attempt == ranked.c.attempts))
            .where(ranked.c.rn <= per_alert)
            .order_by(ranked.c.alert_id, ranked.c.id.desc()))
    return list(conn.execute(stmt).mappings())
