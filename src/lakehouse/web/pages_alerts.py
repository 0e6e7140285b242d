"""The Alerts page: what is firing now (open first, worst first), an alert with every notification
attempt and its escalation, the rules and the routing matrix (docs/operations.md). Acknowledge and
resolve go through services/alerts.py, which checks ``alert.respond`` in the alert's workspace and
audits; adding, disabling and deleting rules and routes likewise need ``alert.manage``.

Every read is scoped to the viewer's workspaces; an alert of another workspace is 404.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from lakehouse.domain.alerts import ALERT_ACTIVE, PARAMS, AlertKind, AlertStatus, Severity
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.domain.status_look import alert_look
from lakehouse.services import alerts, connections, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, InvalidInput, ServiceError
from lakehouse.store import alerts as alert_store
from lakehouse.web import queries
from lakehouse.web.render import address, context, mark_web, page, user

router = APIRouter(include_in_schema=False, dependencies=[Depends(mark_web)])
TABS = ("alerts", "rules", "routing")
ACTIVE = "active"
ALL = "all"
STATES = (ACTIVE, *(s.value for s in AlertStatus), ALL)
LIMIT = 200

def badge(kind: str, value: str | None) -> Markup:
    """``badge("sev", "critical")``: the icon and the word (domain/status_look.py), coloured by the CSS
    class ``sev-critical``."""
    lk = alert_look(kind, value)
    icon, word, css = (lk.icon, lk.word, f"{kind}-{value}") if lk else ("•", value or "—", "")
    return Markup('<span class="status {c}"><span aria-hidden="true">{i}</span> {w}</span>').format(
        c=css, i=icon, w=word)


def _safe_next(value: str | None, fallback: str) -> str:
    """Where to go after a button: back to an Alerts URL of this site only (never elsewhere)."""
    if value and value.startswith("/alerts") and "//" not in value and "\\" not in value:
        return value
    return fallback


# --- the list ---------------------------------------------------------------------------------------

def _filters(request: Request, ctx: Context, p: Principal) -> tuple[dict[str, str], list[str] | None,
                                                                      list[str] | None, int | None]:
    q = request.query_params
    state = q.get("state") or ACTIVE
    sev = q.get("severity") or ""
    ws = q.get("workspace") or ""
    if state not in STATES:
        raise InvalidInput(f"state is one of {', '.join(STATES)}", code="invalid_state")
    if sev and sev not in {s.value for s in Severity}:
        raise InvalidInput(f"severity is one of {', '.join(s.value for s in Severity)}", code="invalid_severity")
    statuses = (sorted(s.value for s in ALERT_ACTIVE) if state == ACTIVE else None if state == ALL else [state])
    ws_id = workspaces.resolve_for(ctx, p, ws) if ws else None  # a foreign workspace is 404
    return {"state": state, "severity": sev, "workspace": ws}, statuses, [sev] if sev else None, ws_id


def _alert_rows(ctx: Context, p: Principal, statuses: list[str] | None, severities: list[str] | None,
                ws_id: int | None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    p.require(Action.RUN_READ)
    with ctx.db.read() as conn:
        rows = [dict(r) for r in alert_store.alerts_page(conn, p.workspace_ids, statuses=statuses,
                                                          severities=severities, workspace_id=ws_id,
                                                          limit=LIMIT)]
        counts = alert_store.alert_status_counts(conn, p.workspace_ids, severities=severities, workspace_id=ws_id)
        notes = alert_store.recent_notifications(conn, [r["id"] for r in rows])
    by_alert: dict[int, list[dict[str, Any]]] = {}
    for n in notes:
        by_alert.setdefault(n["alert_id"], []).append(dict(n))
    for r in rows:
        r["notes"] = by_alert.get(r["id"], [])
    return rows, counts


@router.get("/alerts")
def alerts_page(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    return _list_page(request, p)


def _list_page(request: Request, p: Principal, status: int = 200, tab: str | None = None,
               **extra: Any) -> HTMLResponse:
    p.require(Action.RUN_READ)
    ctx = context(request)
    tab = tab or request.query_params.get("tab") or "alerts"
    if tab not in TABS:
        tab = "alerts"
    f, statuses, severities, ws_id = _filters(request, ctx, p)
    data: dict[str, Any] = {"tab": tab, "tabs": TABS, "f": f, "states": STATES,
                            "severities": [s.value for s in Severity],
                            "workspaces": queries.visible_workspaces(ctx, p), "badge": badge}
    if tab == "alerts":
        rows, counts = _alert_rows(ctx, p, statuses, severities, ws_id)
        counts[ACTIVE] = sum(counts.get(s.value, 0) for s in ALERT_ACTIVE)
        counts[ALL] = sum(counts.get(s.value, 0) for s in AlertStatus)
        data |= {"rows": rows, "counts": counts, "limit": LIMIT,
                 "respond": set(queries.workspaces_allowing(
                     ctx, p, Action.ALERT_RESPOND,
                     [r["workspace"] for r in rows if r["status"] != AlertStatus.RESOLVED.value])),
                 "here": request.url.path + ("?" + request.url.query if request.url.query else ""),
                 "state_url": lambda s: "/alerts?" + urlencode({k: v for k, v in {**f, "state": s}.items() if v})}
    else:
        data["managed"] = queries.workspaces_allowing(ctx, p, Action.ALERT_MANAGE)
        data |= {"form": {}, "errors": {}}
    if tab == "rules":
        data["rules"] = [r for r in alerts.list_rules(ctx, p) if not f["workspace"] or r["workspace"] == f["workspace"]]
        data |= {"kinds": [k.value for k in AlertKind], "envs": ENVIRONMENTS,
                 "params_help": {k.value: ", ".join(f"{x.name} ({x.default if x.default is not None else 'optional'})"
                                                    for x in PARAMS[k]) or "none" for k in AlertKind}}
    elif tab == "routing":
        routes = [r for r in alerts.list_routes(ctx, p) if not f["workspace"] or r["workspace"] == f["workspace"]]
        data |= {"matrix": matrix(routes), "routes": routes,
                 "channels": _channels(ctx, p, data["managed"])}
    data |= extra
    return page(request, "alerts.html", status_code=status, nav="alerts", **data)


def _channels(ctx: Context, p: Principal, managed: list[str]) -> list[dict[str, Any]]:
    """The webhook and SMTP connections a route may name (names and types only)."""
    if not managed or not p.can(Action.CONNECTION_READ):
        return []
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for c in connections.list_connections(ctx, p):
        if c["type"] in alerts.CHANNEL_TYPES and c["workspace"] in managed:
            seen.setdefault((c["workspace"], c["name"]), {"workspace": c["workspace"], "name": c["name"],
                                                          "type": c["type"]})
    return [seen[k] for k in sorted(seen)]


def matrix(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The routing matrix per workspace: severity (worst first) x team ('' = every team) → the routes
    of that cell, by level."""
    out: dict[str, dict[str, Any]] = {}
    for r in routes:
        ws = out.setdefault(r["workspace"], {"workspace": r["workspace"], "teams": set(), "cells": {}})
        team = r["team"] or ""
        ws["teams"].add(team)
        ws["cells"].setdefault((r["severity"], team), []).append(r)
    for ws in out.values():
        ws["teams"] = sorted(ws["teams"], key=lambda t: (t != "", t))
        for cell in ws["cells"].values():
            cell.sort(key=lambda r: (r["level"], r["id"]))
    return [out[k] for k in sorted(out)]


# --- one alert --------------------------------------------------------------------------------------

def escalation(ctx: Context, p: Principal, a: dict[str, Any]) -> dict[str, Any]:
    """Where the alert stands on its escalation path: the level told, the next level's channels and
    when they are told (only while it is open)."""
    team = a["team"] or ""
    routes = [r for r in alerts.list_routes(ctx, p) if r["workspace"] == a["workspace"]
              and r["severity"] == a["severity"] and (r["team"] or "") in {"", team}]
    nxt = [r for r in routes if r["level"] == a["level"] + 1]
    return {"routes": sorted(routes, key=lambda r: (r["level"], r["id"])), "next": nxt,
            "max_level": max((r["level"] for r in routes), default=None)}


def _alert_page(request: Request, p: Principal, alert_id: int, status: int = 200, error: str | None = None
                ) -> HTMLResponse:
    ctx = context(request)
    a = alerts.get_alert(ctx, p, alert_id)
    may = bool(queries.workspaces_allowing(ctx, p, Action.ALERT_RESPOND, [a["workspace"]]))
    return page(request, "alert.html", status_code=status, nav="alerts", a=a, badge=badge, error=error,
                esc=escalation(ctx, p, a), can_respond=a["status"] != AlertStatus.RESOLVED.value and may)


@router.get("/alerts/{alert_id}")
def alert_page(alert_id: int, request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    return _alert_page(request, p, alert_id)


async def _respond(request: Request, p: Principal, alert_id: int, what: str) -> Response:
    form = await request.form()
    nxt = form.get("next")
    ctx = context(request)
    try:
        if what == "ack":
            alerts.acknowledge(ctx, p, alert_id, address(request))
        else:
            alerts.resolve(ctx, p, alert_id, address(request))
    except Conflict as exc:  # someone else was quicker: show where it stands now
        return _alert_page(request, p, alert_id, status=exc.status, error=exc.message)
    return RedirectResponse(_safe_next(nxt if isinstance(nxt, str) else None, f"/alerts/{alert_id}"), status_code=303)


@router.post("/alerts/{alert_id}/ack")
async def acknowledge(alert_id: int, request: Request, p: Principal = Depends(user)) -> Response:
    return await _respond(request, p, alert_id, "ack")


@router.post("/alerts/{alert_id}/resolve")
async def resolve(alert_id: int, request: Request, p: Principal = Depends(user)) -> Response:
    return await _respond(request, p, alert_id, "resolve")


# --- rules and routes (alert.manage) ----------------------------------------------------------------

RULE_FIELDS = ("workspace", "name", "kind", "severity", "environment", "job", "pipeline", "team", "params",
               "window_s")
ROUTE_FIELDS = ("workspace", "severity", "team", "level", "channel", "recipients", "escalate_after_s")
# the field a service's error code is about (the form shows the message next to it)
CODE_FIELDS = {"invalid_name": "name", "rule_exists": "name", "invalid_environment": "environment",
               "invalid_scope": "pipeline", "unknown_job": "job", "invalid_team": "team",
               "invalid_window": "window_s", "invalid_severity": "severity", "invalid_level": "level",
               "invalid_escalation": "escalate_after_s", "unknown_channel": "channel",
               "invalid_channel": "channel", "invalid_recipients": "recipients"}


def _error_field(exc: ServiceError) -> str:
    if exc.code == "invalid_rule":
        if exc.message.startswith("unknown rule kind"):
            return "kind"
        return "severity" if exc.message.startswith("unknown severity") else "params"
    if exc.code == "invalid_scope" and "job" in exc.message and "pipeline" in exc.message:
        return "kind"  # a timed kind scoped to a job or pipeline
    return CODE_FIELDS.get(exc.code, "form")


def parse_params(text: str) -> dict[str, Any]:
    """``k=3, table=bronze.*`` → {"k": 3, "table": "bronze.*"} (numbers where they parse)."""
    out: dict[str, Any] = {}
    for item in (x.strip() for x in text.replace("\n", ",").split(",")):
        if not item:
            continue
        key, eq, value = (x.strip() for x in item.partition("="))
        if not eq or not key or not value:
            raise InvalidInput(f"write parameters as name=value, separated by commas (not {item[:40]!r})",
                               code="invalid_rule")
        try:
            number = float(value)
            out[key] = int(number) if number.is_integer() else number
        except ValueError:
            out[key] = value
    return out


def _number(text: str, field: str, *, whole: bool = False) -> float | int | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"{field} must be a number", code=f"form:{field}") from None
    if whole:
        if not value.is_integer():
            raise InvalidInput(f"{field} must be a whole number", code=f"form:{field}")
        return int(value)
    return value


async def _fields(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    raw = await request.form()
    return {k: v.strip() for k, v in raw.items() if isinstance(v, str) and k in names}


def _form_error(request: Request, p: Principal, tab: str, exc: ServiceError, form: dict[str, str]) -> Response:
    if exc.status in (401, 403, 404):  # not allowed, or not the viewer's workspace: the error page
        raise exc
    field = exc.code.removeprefix("form:") if exc.code.startswith("form:") else _error_field(exc)
    return _list_page(request, p, status=exc.status, tab=tab, form=form, errors={field: exc.message})


@router.post("/alerts/rules")
async def create_rule(request: Request, p: Principal = Depends(user)) -> Response:
    p.require(Action.ALERT_MANAGE)
    form = await _fields(request, RULE_FIELDS)
    try:
        values: dict[str, Any] = {k: form.get(k) or None for k in ("name", "kind", "severity", "environment", "job",
                                                                   "pipeline", "team")}
        values["name"] = form.get("name", "")
        values["params"] = parse_params(form.get("params", ""))
        values["window_s"] = _number(form.get("window_s", ""), "window_s")
        rule = alerts.create_rule(context(request), p, form.get("workspace") or "", values, address(request))
    except ServiceError as exc:
        return _form_error(request, p, "rules", exc, form)
    return RedirectResponse(f"/alerts?tab=rules&workspace={rule['workspace']}", status_code=303)


@router.post("/alerts/rules/{rule_id}/delete")
def delete_rule(rule_id: int, request: Request, p: Principal = Depends(user)) -> Response:
    alerts.delete_rule(context(request), p, rule_id, address(request))
    return RedirectResponse("/alerts?tab=rules", status_code=303)


@router.post("/alerts/rules/{rule_id}/enabled")
async def enable_rule(rule_id: int, request: Request, p: Principal = Depends(user)) -> Response:
    form = await _fields(request, ("enabled",))
    alerts.update_rule(context(request), p, rule_id, {"enabled": form.get("enabled") == "1"}, address(request))
    return RedirectResponse("/alerts?tab=rules", status_code=303)


@router.post("/alerts/routes")
async def add_route(request: Request, p: Principal = Depends(user)) -> Response:
    p.require(Action.ALERT_MANAGE)
    form = await _fields(request, ROUTE_FIELDS)
    try:
        level = _number(form.get("level", ""), "level", whole=True)
        route = alerts.add_route(context(request), p, form.get("workspace") or "", severity_=form.get("severity", ""),
                                 channel=form.get("channel", ""), team=form.get("team") or None,
                                 level=int(level or 0), recipients=form.get("recipients") or None,
                                 escalate_after_s=_number(form.get("escalate_after_s", ""), "escalate_after_s"),
                                 address=address(request))
    except ServiceError as exc:
        return _form_error(request, p, "routing", exc, form)
    return RedirectResponse(f"/alerts?tab=routing&workspace={route['workspace']}", status_code=303)


@router.post("/alerts/routes/{route_id}/delete")
def delete_route(route_id: int, request: Request, p: Principal = Depends(user)) -> Response:
    alerts.delete_route(context(request), p, route_id, address(request))
    return RedirectResponse("/alerts?tab=routing", status_code=303)
