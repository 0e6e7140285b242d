"""Connections, Audit, Users and tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action, Role
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.services import connections, users, workspaces
from lakehouse.services.errors import ServiceError
from lakehouse.web import queries
from lakehouse.web.render import address, context, is_htmx, mark_web, page, user

router = APIRouter(include_in_schema=False, dependencies=[Depends(mark_web)])


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _split(type_: str, form: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    config, secrets = {}, {}
    for f in connections.fields(type_):
        value = form.get(f"f_{f.name}", "")
        if f.secret:
            if value:
                secrets[f.name] = value
        else:
            config[f.name] = value
    return config, secrets


# --- connections ----------------------------------------------------------------------------------

def _connections_page(request: Request, p: Principal, status: int = 200, **extra: Any) -> HTMLResponse:
    ctx = context(request)
    rows = connections.list_connections(ctx, p, request.query_params.get("env") or None)
    return page(request, "connections.html", status_code=status, nav="connections", rows=rows,
                types=connections.TYPES, envs=ENVIRONMENTS, workspaces=_my_workspaces(request, p), **extra)


def _my_workspaces(request: Request, p: Principal) -> list[str]:
    return queries.visible_workspaces(context(request), p)


@router.get("/connections")
def connections_page(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    return _connections_page(request, p, new_type=request.query_params.get("new"))


@router.post("/connections")
async def create_connection(request: Request, p: Principal = Depends(user)) -> Response:
    form = await _form(request)
    type_ = form.get("type", "")
    try:
        config, secrets = _split(type_, form)
        row = connections.create(context(request), p, workspace=form.get("workspace") or "default",
                                 environment=form.get("environment", "dev"), name=form.get("name", ""), type_=type_,
                                 config=config, secrets=secrets, address=address(request))
    except ServiceError as exc:
        if exc.status in (403, 404):
            raise
        safe = {k: v for k, v in form.items() if not k.startswith("f_") or not _is_secret(type_, k[2:])}
        return _connections_page(request, p, status=exc.status, error=exc.message, new_type=type_, form=safe)
    return RedirectResponse(f"/connections/{row['id']}", status_code=303)


def _is_secret(type_: str, name: str) -> bool:
    return any(f.name == name and f.secret for f in connections.TYPES.get(type_, ("", []))[1])


@router.get("/connections/{conn_id}")
def connection_page(conn_id: int, request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    row = connections.get(context(request), p, conn_id)
    return page(request, "connection.html", nav="connections", c=row, fields=connections.fields(row["type"]),
                type_label=connections.TYPES[row["type"]][0])


@router.post("/connections/{conn_id}")
async def update_connection(conn_id: int, request: Request, p: Principal = Depends(user)) -> Response:
    form = await _form(request)
    ctx = context(request)
    row = connections.get(ctx, p, conn_id)
    config, secrets = _split(row["type"], form)
    clear = [k[6:] for k in form if k.startswith("clear_")]
    try:
        connections.update_connection(ctx, p, conn_id, config=config, secrets=secrets, clear=clear,
                                      address=address(request))
    except ServiceError as exc:
        if exc.status in (403, 404):
            raise
        return page(request, "connection.html", status_code=exc.status, nav="connections", c=row,
                    fields=connections.fields(row["type"]), type_label=connections.TYPES[row["type"]][0],
                    error=exc.message)
    return RedirectResponse(f"/connections/{conn_id}?saved=1", status_code=303)


@router.post("/connections/{conn_id}/test")
def test_connection(conn_id: int, request: Request, p: Principal = Depends(user)) -> Response:
    try:
        result = connections.test_connection(context(request), p, conn_id, address(request))
    except ServiceError as exc:  # refused before connecting (egress allow-list, SQLite folders): recorded
        if exc.status in (403, 404):
            raise
        result = {"ok": False, "message": exc.message, "elapsed_ms": 0}
    if is_htmx(request):
        return page(request, "connection_test.html", result=result)
    return RedirectResponse(f"/connections/{conn_id}", status_code=303)


@router.post("/connections/{conn_id}/delete")
def delete_connection(conn_id: int, request: Request, p: Principal = Depends(user)) -> Response:
    connections.delete_connection(context(request), p, conn_id, address(request))
    return RedirectResponse("/connections", status_code=303)


# --- audit ---------------------------------------------------------------------------------------

@router.get("/audit")
def audit_page(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    q = request.query_params
    days = q.get("days", "")
    f = queries.AuditFilter(actor=q.get("actor") or None, action=q.get("action") or None,
                            object_id=q.get("object") or None,
                            since=datetime.now(UTC) - timedelta(days=int(days)) if days.isdigit() else None)
    before = q.get("before", "")
    ctx = context(request)
    rows, next_before = queries.audit_entries(ctx, p, f, int(before) if before.isdigit() else None)
    verified = queries.audit_verify(ctx, p) if q.get("verify") else None
    return page(request, "audit.html", nav="audit", rows=rows, next_before=next_before, verified=verified)


# --- users and tokens ----------------------------------------------------------------------------

def _users_page(request: Request, p: Principal, status: int = 200, **extra: Any) -> HTMLResponse:
    ctx = context(request)
    return page(request, "users.html", status_code=status, nav="users", rows=users.list_users(ctx, p),
                roles=[r.value for r in Role], workspaces=users.list_workspaces(ctx, p), **extra)


@router.get("/admin/users")
def users_page(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    return _users_page(request, p)


@router.post("/admin/users")
async def users_action(request: Request, p: Principal = Depends(user)) -> Response:
    p.require(Action.USER_ADMIN)
    form = await _form(request)
    ctx = context(request)
    addr = address(request)
    op = form.get("op", "")
    new_token = None
    try:
        if op == "create":
            users.create(ctx, p, form.get("name", ""), form.get("role", ""), form.get("password") or None, addr)
        elif op == "role":
            users.set_role(ctx, p, form.get("name", ""), form.get("role", ""), addr)
        elif op in ("disable", "enable"):
            users.set_disabled(ctx, p, form.get("name", ""), op == "disable", addr)
        elif op in ("join", "leave"):
            users.set_membership(ctx, p, form.get("name", ""), form.get("workspace", ""), op == "join", addr)
        elif op == "token":
            new_token = users.create_token(ctx, p, form.get("name", ""), form.get("role") or None,
                                           form.get("label") or None)
        elif op == "revoke" and form.get("token_id", "").isdigit():
            users.revoke_token(ctx, p, int(form["token_id"]), addr)
        else:
            return _users_page(request, p, status=422, error=f"unknown operation {op!r}")
    except ServiceError as exc:
        if exc.status == 403:
            raise
        return _users_page(request, p, status=exc.status, error=exc.message)
    if new_token:
        return _users_page(request, p, new_token=new_token, token_user=form.get("name"))
    return RedirectResponse("/admin/users", status_code=303)


# --- workspaces and their members ------------------------------------------------------------------

def _workspaces_page(request: Request, p: Principal, status: int = 200, **extra: Any) -> HTMLResponse:
    ctx = context(request)
    return page(request, "workspaces.html", status_code=status, nav="workspaces",
                rows=workspaces.list_workspaces(ctx, p), members=workspaces.all_members(ctx, p),
                user_names=[u["name"] for u in users.list_users(ctx, p)], member_roles=workspaces.MEMBER_ROLES,
                **extra)


@router.get("/admin/workspaces")
def workspaces_page(request: Request, p: Principal = Depends(user)) -> HTMLResponse:
    return _workspaces_page(request, p)


@router.post("/admin/workspaces")
async def workspaces_action(request: Request, p: Principal = Depends(user)) -> Response:
    p.require(Action.USER_ADMIN)
    form = await _form(request)
    ctx = context(request)
    addr = address(request)
    op = form.get("op", "")
    try:
        if op == "create":
            workspaces.create_workspace(ctx, p, form.get("slug", ""), form.get("name") or None, addr)
        elif op == "member":
            workspaces.set_member(ctx, p, form.get("workspace", ""), form.get("user", ""), form.get("role") or None,
                                  addr)
        elif op == "remove":
            workspaces.remove_member(ctx, p, form.get("workspace", ""), form.get("user", ""), addr)
        else:
            return _workspaces_page(request, p, status=422, error=f"unknown operation {op!r}")
    except ServiceError as exc:
        if exc.status == 403:
            raise
        return _workspaces_page(request, p, status=exc.status, error=exc.message,
                                form={"slug": form.get("slug", ""), "name": form.get("name", "")})
    return RedirectResponse("/admin/workspaces", status_code=303)
