"""/metrics, /ready and the freshness SLO (fake clock, a source whose changes stop reaching bronze)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from lakehouse.api import alerts as alerts_api
from lakehouse.api import ops_metrics as ops_metrics_api
from lakehouse.api.app import create_app
from lakehouse.domain.principal import SYSTEM
from lakehouse.services import alert_eval, alerts, freshness
from lakehouse.services.context import Context
from tests.clock_support import Clock
from tests.operations.conftest import fail_run, start_run, succeed_run


def app_for(ctx: Context) -> FastAPI:
    app = create_app(ctx, reaper=False)
    paths = {getattr(r, "path", None) for r in app.routes}
    if "/metrics" not in paths:
        app.include_router(ops_metrics_api.router)
    if "/api/alerts" not in paths:
        app.include_router(alerts_api.router)
    return app


def test_metrics_need_the_token_or_loopback(ctx: Context, clock: Clock) -> None:
    ctx.settings.metrics_token = "scrape-me"
    fail_run(ctx, clock, attempts=2)
    succeed_run(ctx, clock)
    start_run(ctx, spec="queued")
    client = TestClient(app_for(ctx))
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'lakehouse_queue_depth{capability="noop"} 1.0' in text
    assert 'lakehouse_queue_oldest_age_seconds{capability="noop"}' in text
    assert 'lakehouse_phase_outcomes_total{status="failed",type="noop"} 1.0' in text
    assert 'lakehouse_phase_outcomes_total{status="succeeded",type="noop"} 1.0' in text
    assert "lakehouse_phase_retries_total 1.0" in text
    assert "lakehouse_notifications_sent_total 0.0" in text and "lakehouse_notifications_failed_total 0.0" in text
    assert 'lakehouse_phase_queue_wait_seconds_bucket{le="+Inf"} 2.0' in text
    assert 'lakehouse_phase_duration_seconds_count{type="noop"} 2.0' in text
    assert "lakehouse_lease_expirations_total 0.0" in text
    ctx.settings.metrics_token = ""
    assert client.get("/metrics").status_code == 403  # the test client is not a loopback address
    assert ops_metrics_api.loopback("127.0.0.1") and ops_metrics_api.loopback("::1")
    assert not ops_metrics_api.loopback("10.0.0.1") and not ops_metrics_api.loopback("testclient")


def test_ready_reports_its_checks(ctx: Context, clock: Clock) -> None:
    app = app_for(ctx)
    client = TestClient(app)
    app.state.runs_scheduler = True  # a process that should run the scheduler, whose thread is not alive
    r = client.get("/ready")
    assert r.status_code == 503 and r.json()["checks"] == {"database": True, "migrations": True, "scheduler": False}
    app.state.runs_scheduler = False  # a process that does not run the scheduler
    r = client.get("/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def publish_manifest(changed_at: Any) -> dict[str, Any]:
    return {"outputs": {"bronze.sale_order": {"rows": 10}, "silver.orders": {"rows": 10}},
            "watermarks": {"sale_order": {"column": "write_date",
                                          "value": changed_at.replace(tzinfo=None).isoformat()}},
            "lineage": {"edges": [{"inputs": ["odoo.sale_order"], "outputs": ["bronze.sale_order"]},
                                  {"inputs": ["bronze.sale_order"], "outputs": ["silver.orders"]}],
                        "outputs": ["bronze.sale_order", "silver.orders"]}}


def test_freshness_slo_over_ten_cycles_then_the_alert(ctx: Context, clock: Clock) -> None:
    alerts.create_rule(ctx, SYSTEM, "default", {"name": "fresh", "kind": "freshness_breached",
                                                "params": {"slo_s": 900, "table": "silver.*"}})
    for _ in range(10):  # every 5 minutes the source changes and the incremental run carries it
        clock.advance(300)
        succeed_run(ctx, clock, spec="odoo", took_s=20, manifest=publish_manifest(clock.now - timedelta(seconds=60)))
        alert_eval.evaluate(ctx)
        rows = {r["table"]: r for r in freshness.list_freshness(ctx, SYSTEM)}
        assert set(rows) == {"bronze.sale_order", "silver.orders"}
        assert all(r["freshness_s"] < 900 for r in rows.values())
    assert alerts.list_alerts(ctx, SYSTEM) == []
    stuck = clock.now - timedelta(seconds=60)  # the source's changes stop reaching bronze
    fired_in = None
    for cycle in range(5):
        clock.advance(300)
        succeed_run(ctx, clock, spec="odoo", took_s=20, manifest=publish_manifest(stuck))
        alert_eval.evaluate(ctx)
        if alerts.list_alerts(ctx, SYSTEM):
            fired_in = cycle
            break
    [alert] = alerts.list_alerts(ctx, SYSTEM)
    assert alert["group"] == "dev/silver.orders" and alert["details"]["freshness_s"] > 900
    assert fired_in == 2  # 60 s + 3 x 300 s > 15 min: the first cycle past the SLO fires
    clock.advance(300)
    succeed_run(ctx, clock, spec="odoo", took_s=20, manifest=publish_manifest(clock.now - timedelta(seconds=30)))
    alert_eval.evaluate(ctx)
    assert alerts.list_alerts(ctx, SYSTEM) == []  # fresh again: resolved by itself
