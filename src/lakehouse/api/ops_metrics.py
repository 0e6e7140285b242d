"""``/metrics`` (Prometheus text format) and ``/ready`` (database, migrations, scheduler), beside
``/health``. /metrics needs ``Authorization: Bearer $LAKEHOUSE_METRICS_TOKEN`` when that setting is
set, and answers loopback clients only otherwise (behind a reverse proxy: set the token, or list
the proxy in ``LAKEHOUSE_TRUSTED_PROXIES`` so that the client address is the real one)."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lakehouse.api.deps import address, context
from lakehouse.services import ops_metrics
from lakehouse.services.context import Context
from lakehouse.services.errors import Forbidden, Unauthorized

router = APIRouter(tags=["health"])


def loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_metrics_access(token_setting: str, authorization: str, client: str | None) -> None:
    if token_setting:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token_setting.encode()):
            raise Unauthorized("/metrics needs Authorization: Bearer <LAKEHOUSE_METRICS_TOKEN>", code="invalid_token")
    elif not loopback(client):
        raise Forbidden("/metrics answers loopback clients only (or set LAKEHOUSE_METRICS_TOKEN)",
                        code="metrics_loopback_only")


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request, ctx: Context = Depends(context),
                  client: str | None = Depends(address)) -> Response:
    """Prometheus metrics, computed from the database on each scrape (docs/operations.md)."""
    check_metrics_access(ctx.settings.metrics_token, request.headers.get("authorization", ""), client)
    body, content_type = await run_in_threadpool(ops_metrics.render_metrics, ctx)
    return Response(content=body, media_type=content_type)


@router.get("/ready")
async def ready(request: Request, ctx: Context = Depends(context)) -> Any:
    """200 when the database answers, its schema is at head and the scheduler runs; 503 otherwise,
    with the checks."""
    expected = getattr(request.app.state, "runs_scheduler", True)
    expected = bool(expected()) if callable(expected) else bool(expected)  # the leader runs it; followers don't
    ok, checks = await run_in_threadpool(lambda: ops_metrics.readiness(ctx, scheduler_expected=expected))
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)
