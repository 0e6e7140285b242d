"""The session middleware: cookie → principal, CSRF on unsafe requests, security headers."""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lakehouse.services import sessions
from lakehouse.services.context import Context
from lakehouse.web import csrf

COOKIE = "lh_session"
PRE_COOKIE = "lh_login_csrf"
LOGIN_PATH = "/login"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def cookie_flags(scope: Scope) -> dict[str, Any]:
    return {"httponly": True, "samesite": "lax", "secure": scope.get("scheme") == "https", "path": "/"}


class SessionMiddleware:
    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx
        sessions.trusted_networks(tuple(ctx.settings.trusted_proxies))  # a wrong entry fails at start

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        cookies = cookie_parser(headers.get("cookie", ""))
        state = scope.setdefault("state", {})
        has_auth = "authorization" in headers
        session = None
        if not has_auth and cookies.get(COOKIE):
            session = await run_in_threadpool(sessions.lookup, self.ctx, cookies[COOKIE])
        if session is not None:
            state["session"] = session
            state["session_principal"] = session.principal
        if scope["method"] not in csrf.SAFE_METHODS and not has_auth and (
            session is not None or cookies.get(COOKIE) or scope["path"] == LOGIN_PATH
        ):
            expected = session.csrf_token if session else (
                cookies.get(PRE_COOKIE) if scope["path"] == LOGIN_PATH else None)
            given = headers.get(csrf.HEADER)
            if not given and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                try:
                    body = await csrf.read_body(receive)
                except csrf.FormTooLarge:
                    await _refuse(scope, receive, send, 413, "too_large", "the form is too large")
                    return
                given = csrf.token_from_form(body)
                receive = csrf.replay(body, receive)
            if not csrf.matches(given, expected):
                message = ("your session has ended; log in again" if expected is None and scope["path"] != LOGIN_PATH
                           else "the form's CSRF token is missing or wrong; reload the page and try again")
                await _refuse(scope, receive, send, 403, "csrf_failed", message)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                h.setdefault("X-Content-Type-Options", "nosniff")
                h.setdefault("Referrer-Policy", "same-origin")
                if h.get("content-type", "").startswith("text/html"):
                    h.setdefault("Server-Timing", f"app;dur={(time.perf_counter() - started) * 1000:.1f}")
                    h.setdefault("X-Frame-Options", "DENY")
                    h.setdefault("Content-Security-Policy", CSP)
                    h.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, message: str) -> None:
    accept = Headers(scope=scope).get("accept", "")
    if "text/html" in accept:
        body = (f"<!doctype html><meta charset=utf-8><title>{status}</title><main style='font-family:sans-serif;"
                f"max-width:40rem;margin:4rem auto'><h1>{status}</h1><p>{message}</p>"
                f"<p><a href='/login'>Log in</a> · <a href='/'>Overview</a></p></main>")
        response = Response(body, status_code=status, media_type="text/html")
    else:
        payload = {"error": {"code": code, "message": message, "details": None}}
        response = Response(orjson.dumps(payload), status_code=status, media_type="application/json")
    await response(scope, receive, send)
