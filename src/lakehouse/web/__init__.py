"""The Control Room: server-rendered pages (Jinja2 + htmx, live parts over SSE) on the same app as the API.

``install(app)`` adds the session middleware (cookie → principal, CSRF, security headers), the page
routers and the static files. Front-end libraries come from npm at build time into ``static/vendor/``.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from lakehouse.services.errors import ServiceError
from lakehouse.web import pages_admin, pages_alerts, pages_auth, pages_caps, pages_data, pages_jobs, pages_runs
from lakehouse.web.render import LoginRequired, error_page, is_htmx
from lakehouse.web.session import SessionMiddleware

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    ctx = app.state.ctx
    for router in (pages_auth.router, pages_runs.router, pages_admin.router, pages_data.router, pages_jobs.router,
                   pages_caps.router, pages_alerts.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")
    app.add_middleware(SessionMiddleware, ctx=ctx)
    api_handler = app.exception_handlers.get(ServiceError)

    async def _login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        target = "/login?next=" + _quote(exc.next_url)
        if is_htmx(request):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    async def _service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        if request.scope.get("lakehouse_web"):
            return error_page(request, exc.status, exc.message)
        if api_handler is not None:
            answer = api_handler(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        return JSONResponse({"error": {"code": exc.code, "message": exc.message, "details": exc.details}},
                            status_code=exc.status)

    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(ServiceError, _service_error)


def _quote(url: str) -> str:
    from urllib.parse import quote

    return quote(url, safe="/")
