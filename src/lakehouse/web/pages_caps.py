"""The Caps page: every runtime cap the user may read, usage vs limit now and who is throttled; for
those with ``cap.manage`` in a workspace, a form to set (create or replace) a cap and a button to
delete one. services/caps.py checks the permission, validates and audits (docs/operations.md, Caps)."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lakehouse.domain.caps import LIMITS, QueueMode, ScopeKind
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.services import caps
from lakehouse.services.errors import InvalidInput
from lakehouse.web import queries
from lakehouse.web.render import context, mark_web, page, user

router = APIRouter(include_in_schema=False, dependencies=[Depends(mark_web)])
FIELDS = ("workspace", "scope", "value", *LIMITS, "queue_mode")
COUNTS = ("max_concurrent", "max_queued_runs")


def _caps_page(request: Request, p: Principal, status: int = 200, form: dict[str, str] | None = None,
               errors: dict[str, str] | None = None) -> HTMLResponse:
    ctx = context(request)
    rows = caps.report(ctx, p)
    managed = queries.workspaces_allowing(ctx, p, Action.CAP_MANAGE)
    edit = request.query_params.get("edit")
    if form is None:
        form = {"scope": ScopeKind.WORKSPACE.value, "queue_mode": QueueMode.REJECT.value}
        chosen = next((c for c in rows if edit and str(c["id"]) == edit and c["workspace"] in managed), None)
        if chosen is not None:
            form = {"workspace": chosen["workspace"], "scope": chosen["scope"], "value": chosen["value"] or "",
                    "queue_mode": chosen["queue_mode"],
                    **{k: _shown(chosen[k]) for k in LIMITS}}
    return page(request, "caps.html", status_code=status, nav="caps", rows=rows, managed=managed, form=form,
                errors=errors or {}, scopes=[s.value for s in ScopeKind], modes=[m.value for m in QueueMode],
                saved=request.query_params.get("saved"), deleted=request.query_params.get("deleted"))


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@router.get("/caps")
def caps_page(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    return _caps_page(request, p)


def limits_from_form(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The limits a form asks for (empty: not limited) and the fields that are not numbers at all;
    ranges and whole numbers are the domain's to check (domain/caps.py)."""
    limits: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key in LIMITS:
        text = (form.get(key) or "").strip()
        if not text:
            continue
        try:
            number: float | int = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                errors[key] = "must be a number" + (" (a whole number)" if key in COUNTS else " of seconds")
                continue
        if isinstance(number, float) and key in COUNTS and number.is_integer() and math.isfinite(number):
            number = int(number)
        limits[key] = number
    return limits, errors


@router.post("/caps")
async def set_cap(request: Request, p: Principal = Depends(user)) -> Response:
    p.require(Action.CAP_MANAGE)
    raw = await request.form()
    form = {k: v.strip() for k, v in raw.items() if isinstance(v, str) and k in FIELDS}
    limits, errors = limits_from_form(form)
    if not form.get("workspace"):
        errors["workspace"] = "choose a workspace"
    if errors:
        return _caps_page(request, p, status=422, form=form, errors=errors)
    try:
        cap = caps.set_cap(context(request), p, form["workspace"], form.get("scope", ""), form.get("value") or None,
                           limits, form.get("queue_mode") or None)
    except InvalidInput as exc:
        field = exc.details.get("field") if isinstance(exc.details, dict) else None
        key = field if field in FIELDS else "limits"
        message = exc.message.removeprefix(f"{field}: ") if field else exc.message
        return _caps_page(request, p, status=exc.status, form=form, errors={key: message})
    return RedirectResponse(f"/caps?saved={cap['id']}", status_code=303)


@router.post("/caps/{cap_id}/delete")
def delete_cap(cap_id: int, request: Request, p: Principal = Depends(user)) -> Response:
    caps.delete_cap(context(request), p, cap_id)
    return RedirectResponse(f"/caps?deleted={cap_id}", status_code=303)
