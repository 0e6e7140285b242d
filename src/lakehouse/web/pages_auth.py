"""Log in, log out, change one's password, see and revoke one's own API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from lakehouse.services import cli_tokens, sessions
from lakehouse.services.errors import ServiceError
from lakehouse.services.sessions import Session
from lakehouse.web.render import address, context, mark_web, page, session
from lakehouse.web.session import COOKIE, PRE_COOKIE, cookie_flags, new_login_token

router = APIRouter(include_in_schema=False, dependencies=[Depends(mark_web)])


def _safe_next(url: str | None) -> str:
    if url and url.startswith("/") and not url.startswith("//") and not url.startswith("/login"):
        return url
    return "/"


def _login_page(request: Request, *, error: str | None = None, name: str = "", status: int = 200) -> HTMLResponse:
    token = request.cookies.get(PRE_COOKIE) or new_login_token()
    resp = page(request, "login.html", status_code=status, login_csrf=token, error=error, name=name,
                next=_safe_next(request.query_params.get("next")))
    resp.set_cookie(PRE_COOKIE, token, max_age=3600, **cookie_flags(request.scope))
    return resp


@router.get("/login")
def login_form(request: Request) -> Response:
    if getattr(request.state, "session", None) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return _login_page(request)


@router.post("/login")
async def login(request: Request, name: str = Form(""), password: str = Form(""),
                next: str = Form("/")) -> Response:
    ctx = context(request)
    try:
        value, _session = await run_in_threadpool(sessions.login, ctx, name, password, address(request))
    except ServiceError as exc:
        answer = _login_page(request, error=exc.message, name=name, status=exc.status)
        if exc.status == 429 and isinstance(exc.details, dict) and "retry_after_s" in exc.details:
            answer.headers["Retry-After"] = str(int(exc.details["retry_after_s"]))
        return answer
    resp = RedirectResponse(_safe_next(next), status_code=303)
    resp.set_cookie(COOKIE, value, max_age=int(sessions.SESSION_TTL.total_seconds()), **cookie_flags(request.scope))
    resp.delete_cookie(PRE_COOKIE, path="/")
    return resp


@router.post("/logout")
def logout(request: Request) -> Response:
    sess = getattr(request.state, "session", None)
    if sess is not None:
        sessions.logout(context(request), sess, address(request))
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


def _account(request: Request, s: Session, status: int = 200, **extra: object) -> HTMLResponse:
    return page(request, "account.html", status_code=status, nav="account",
                tokens=cli_tokens.own_tokens(context(request), s.principal), **extra)


@router.get("/account")
def account(request: Request, s: Session = Depends(session)) -> HTMLResponse:
    return _account(request, s, done=request.query_params.get("done"))


@router.post("/account/password")
def change_password(request: Request, current: str = Form(""), new: str = Form(""), confirm: str = Form(""),
                    s: Session = Depends(session)) -> Response:
    if new != confirm:
        return _account(request, s, 422, error="the new password and its confirmation differ")
    try:
        sessions.change_password(context(request), s, current, new, address(request))
    except ServiceError as exc:
        return _account(request, s, exc.status, error=exc.message)
    return RedirectResponse("/account?done=password", status_code=303)


@router.post("/account/tokens/revoke")
def revoke_token(request: Request, token_id: int = Form(...), s: Session = Depends(session)) -> Response:
    """Revoke one of one's own API tokens (a `lakehouse login` on a lost laptop)."""
    try:
        cli_tokens.revoke_own_token(context(request), s.principal, token_id, address(request))
    except ServiceError as exc:
        return _account(request, s, exc.status, error=exc.message)
    return RedirectResponse("/account?done=token", status_code=303)
