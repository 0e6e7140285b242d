"""Every page renders real data from the services; actions on runs work; lists paginate."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from lakehouse.services.context import Context
from tests.web.conftest import Browser

RUN = {"spec_slug": "odoo_ingest_bronze", "git_sha": "0123456789abcdef", "environment": "prod",
       "phases": [{"name": "ingest", "type": "noop"}, {"name": "transform", "type": "noop", "max_attempts": 1},
                  {"name": "publish", "type": "noop"}]}


def _drive(client: TestClient, ex: dict[str, str], run_id: str, fail_phase: str | None = None) -> None:
    """Play an executor: claim and complete (or fail) each phase, with an artifact on the first."""
    while True:
        r = client.post(f"/ops/runs/{run_id}/claim", json={"executor_id": "w-1", "capabilities": ["noop"]}, headers=ex)
        if r.status_code == 204:
            return
        c = r.json()
        if c["phase"] == "ingest":
            body = b"id,name\n1,Azure Interior\n"
            sha = hashlib.sha256(body).hexdigest()
            client.put(f"/ops/artifacts/{sha}", content=body, headers=ex)
            client.post("/ops/artifacts", headers=ex, json={"run_id": run_id, "phase": "ingest", "name": "partners.csv",
                        "sha256": sha, "size_bytes": len(body), "media_type": "text/csv", "metadata": {}})
            client.post(f"/ops/runs/{run_id}/events", headers=ex, json={"lease_token": c["lease_token"], "events": [
                {"event_id": "dq1", "type": "DQ_RESULT", "ts": "2026-11-22T09:00:00Z", "message": "row count",
                 "payload": {"check": "row_count >= 1", "passed": True}}]})
        if c["phase"] == fail_phase:
            client.post(f"/ops/runs/{run_id}/fail", headers=ex,
                        json={"lease_token": c["lease_token"], "error": "division by zero in revenue.sql",
                              "retryable": False})
            return
        client.post(f"/ops/runs/{run_id}/complete", headers=ex, json={
            "lease_token": c["lease_token"], "output_manifest": {"outputs": {f"bronze.{c['phase']}": {
                "rows": 1, "sha256": "ab" * 32}}}})


def test_run_pages_and_actions(admin_browser: Browser, executor_token: str, ctx: Context) -> None:
    b = admin_browser
    ex = {"Authorization": f"Bearer {executor_token}"}
    ok = b.client.post("/ops/runs", json=RUN, headers={"X-CSRF-Token": b.csrf}).json()["run_id"]
    _drive(b.client, ex, ok)
    bad = b.client.post("/ops/runs", json=RUN, headers={"X-CSRF-Token": b.csrf}).json()["run_id"]
    _drive(b.client, ex, bad, fail_phase="transform")

    page = b.get(f"/runs/{ok}").text
    assert "s-succeeded" in page and "✓" in page and "odoo_ingest_bronze" in page
    assert 'class="timeline"' in page and page.count('class="bar s-succeeded"') == 3
    assert "RUN_SUCCEEDED" in page and "0123456789abcdef" in page
    assert "partners.csv" in b.get(f"/runs/{ok}?tab=artifacts").text
    assert "row_count &gt;= 1" in b.get(f"/runs/{ok}?tab=dq").text
    assert "bronze.publish" in b.get(f"/runs/{ok}?tab=outputs").text
    art = b.get(f"/runs/{ok}?tab=artifacts").text.split(f"/runs/{ok}/artifacts/")[1].split('"')[0]
    preview = b.get(f"/runs/{ok}/artifacts/{art}")
    assert preview.status_code == 200 and "Azure Interior" in preview.text
    download = b.get(f"/ops/artifacts/{art}")  # the API accepts the session cookie for reads
    assert download.status_code == 200 and download.content.startswith(b"id,name")

    failed = b.get(f"/runs/{bad}").text
    assert "transform failed after 1 attempt" in failed and "division by zero in revenue.sql" in failed
    assert "Rerun from transform" in failed
    r = b.post(f"/runs/{bad}/rerun", {"from_phase": "transform"})
    assert r.status_code == 303
    new_id = r.headers["location"].rsplit("/", 1)[1]
    new = b.client.get(f"/ops/runs/{new_id}").json()
    assert [p["name"] for p in new["phases"]] == ["transform", "publish"]
    assert new["labels"]["rerun_of"] == bad and "ingest" in new["input_manifest"]["previous_outputs"]
    assert "Cancel run" in b.get(f"/runs/{new_id}").text
    assert b.post(f"/runs/{new_id}/cancel").status_code == 303
    assert b.client.get(f"/ops/runs/{new_id}").json()["status"] == "cancelled"
    r = b.post(f"/runs/{ok}/rerun")
    full = b.client.get(f"/ops/runs/{r.headers['location'].rsplit('/', 1)[1]}").json()
    assert [p["name"] for p in full["phases"]] == ["ingest", "transform", "publish"]

    # the live fragment and the SSE stream, through the session cookie
    assert 'id="run-live"' in b.get(f"/runs/{ok}/live").text
    with b.client.stream("GET", f"/ops/runs/{ok}/events/stream") as s:
        body = b"".join(s.iter_bytes())
    assert b"event: RUN_SUCCEEDED" in body and b"event: end" in body

    overview = b.get("/").text
    assert "Failed (24 h)" in overview and 'href="/runs?status=failed">1 failed run' in overview
    assert "division by zero" in overview
    assert "hourly-data" in overview
    execs = b.get("/executors").text
    assert "w-1" in execs and "s-online" in execs


def test_runs_list_filters_and_keyset_pages(admin_browser: Browser, ctx: Context) -> None:
    from lakehouse.domain.principal import SYSTEM
    from lakehouse.domain.runs import RunRequest
    from lakehouse.services import runs

    t0 = ctx.clock()
    made = []
    for i in range(55):
        ctx.clock = lambda i=i: t0 + timedelta(seconds=i)  # type: ignore[misc]
        req = RunRequest(spec_slug="alpha" if i % 2 else "beta", git_sha="g", environment="dev" if i % 3 else "prod",
                         phases=[{"name": "p", "type": "noop"}])
        made.append(runs.create_run(ctx, req, SYSTEM)[0]["run_id"])
    b = admin_browser
    first = b.get("/runs").text
    assert made[-1] in first and made[5] in first and made[4] not in first and "Older runs" in first
    cursor = first.split("before=")[1].split('"')[0].replace("&amp;", "&")
    second = b.get(f"/runs?before={cursor}", headers={"HX-Request": "true"}).text
    assert made[4] in second and made[-1] not in second and "<html" not in second
    only = b.get("/runs?pipeline=alpha&env=prod").text
    expected = [rid for i, rid in enumerate(made) if i % 2 and not i % 3]
    assert all(rid in only for rid in expected) and made[0] not in only
    assert "No runs match" in b.get("/runs?status=failed").text
    assert b.get("/runs?status=bogus").status_code == 422
    assert b.get("/runs?from=2001-01-01&to=2001-01-02").status_code == 200


def test_every_page_renders_fast(admin_browser: Browser) -> None:
    b = admin_browser
    for url in ("/", "/runs", "/executors", "/pipelines", "/catalog", "/sql", "/connections", "/connections?new=s3",
                "/audit", "/admin/users", "/account"):
        b.get(url)  # warm the template cache
        t = time.perf_counter()
        r = b.get(url)
        elapsed = time.perf_counter() - t
        assert r.status_code == 200, (url, r.text[:500])
        assert r.headers["content-type"].startswith("text/html") and "app;dur=" in r.headers["server-timing"]
        assert elapsed < 0.5, f"{url} took {elapsed:.3f} s"
    assert b.get("/runs/00000000-0000-0000-0000-000000000000").status_code == 404


def test_pipelines_page_lists_and_starts(admin_browser: Browser, ctx: Context) -> None:
    page = admin_browser.get("/pipelines").text
    if not ctx.settings.pipelines_dir.is_dir():
        assert "No pipeline specs" in page
        return
    assert "odoo_ingest_bronze" in page
    spec = admin_browser.get("/pipelines/odoo_ingest_bronze")
    assert spec.status_code == 200 and "Start a run" in spec.text
    r = admin_browser.post("/pipelines/odoo_ingest_bronze/runs", {"environment": "dev", "params": ""})
    assert r.status_code == 303 and r.headers["location"].startswith("/runs/")


def test_users_admin(admin_browser: Browser, ctx: Context) -> None:
    b = admin_browser
    assert b.post("/admin/users", {"op": "create", "name": "newbie", "role": "analyst",
                                   "password": "long enough pw"}).status_code == 303
    r = b.post("/admin/users", {"op": "token", "name": "newbie", "label": "ci"})
    assert r.status_code == 200 and "shown only once" in r.text
    token = r.text.split('class="copy token">')[1].split("<")[0]
    assert b.client.get("/ops/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert b.post("/admin/users", {"op": "role", "name": "newbie", "role": "viewer"}).status_code == 303
    assert b.post("/admin/users", {"op": "role", "name": "admin", "role": "viewer"}).status_code == 409
    page: Any = b.get("/admin/users").text
    assert "newbie" in page and token not in page


def test_sql_page_runs_searches_and_downloads(admin_browser: Browser) -> None:
    b = admin_browser
    r = b.post("/sql", {"sql": "SELECT 42 AS answer, 'x' AS label", "env": "dev"})
    assert r.status_code == 200 and '<td class="num" data-v="42">42</td>' in r.text and "INTEGER" in r.text
    csv_link = r.text.split('href="/sql/queries/')[1].split('"')[0]
    assert csv_link.endswith("result.csv")
    csv = b.get(f"/sql/queries/{csv_link}")
    assert csv.status_code == 200 and csv.text.splitlines()[0].replace('"', "") == "answer,label"
    parquet = b.get(f"/sql/queries/{csv_link.replace('.csv', '.parquet')}")
    assert parquet.content[:4] == b"PAR1"
    err = b.post("/sql", {"sql": "SELECT\n  nope", "env": "dev"}, headers={"HX-Request": "true"})
    assert "line 2" in err.text and "<html" not in err.text
    assert "SELECT 42 AS answer" in b.get("/sql?q=answer").text
