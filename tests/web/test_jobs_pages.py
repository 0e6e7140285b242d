"""The job pages, server-rendered: list with filters, the job form with errors next to the field,
the runs-by-phases grid, versions and diff, schedule, environments and gates, backfills, and the
Overview's schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from lakehouse.domain.principal import SYSTEM
from lakehouse.services import jobs, promotions, runs
from lakehouse.services.context import Context
from lakehouse.store.tables import jobs as jobs_table
from lakehouse.store.tables import phases
from lakehouse.store.tables import runs as runs_table
from tests.web.conftest import Browser

FORM = {"name": "orders_daily", "type": "sql", "description": "Orders per day", "environment": "dev",
        "param_rows": "2", "param_name_0": "day", "param_type_0": "date", "param_default_0": "2024-01-01",
        "param_name_1": "", "sql_query": "SELECT {{ day }} AS day, 42 AS n", "sql_engine": "duckdb",
        "sql_mode": "overwrite"}


def _finish(ctx: Context, run_id: str, status: str) -> None:
    with ctx.db.write() as conn:
        conn.execute(update(phases).where(phases.c.run_id == run_id).values(status=status))
        conn.execute(update(runs_table).where(runs_table.c.id == run_id).values(
            status=status, finished_at=datetime.now(UTC)))


def test_empty_states_say_what_to_do(admin_browser: Browser) -> None:
    page = admin_browser.get("/jobs").text
    assert "No jobs yet" in page and 'href="/jobs/new"' in page and "lakehouse jobs apply" in page
    assert 'aria-current="page">Jobs</a>' in page
    overview = admin_browser.get("/").text
    assert "Nothing scheduled in the next hour" in overview


def test_form_errors_are_next_to_their_field_and_nothing_is_saved(admin_browser: Browser, ctx: Context) -> None:
    b = admin_browser
    form = admin_browser.get("/jobs/new").text
    assert 'name="sql_query"' in form and 'name="schedule_cron"' in form
    r = b.post("/jobs/new", {**FORM, "name": "Bad Name", "schedule_cron": "61 * * * *",
                             "schedule_timezone": "Mars/Olympus"})
    assert r.status_code == 422
    for field in ("name", "schedule-cron", "schedule-timezone"):
        assert f'id="err-{field}"' in r.text, field
        assert f'aria-describedby="err-{field}"' in r.text, field
    assert 'value="Bad Name"' in r.text  # what was typed stays
    r = b.post("/jobs/new", {**FORM, "sql_query": "SELECT {{ nope }}"})
    assert r.status_code == 422 and 'id="err-sql-query"' in r.text and "nope" in r.text
    r = b.post("/jobs/new", {**FORM, "param_default_0": "yesterday"})
    assert r.status_code == 422 and 'id="err-params-day"' in r.text
    assert jobs.list_jobs(ctx, SYSTEM) == []
    ok = b.post("/jobs/new", FORM)
    assert ok.status_code == 303 and ok.headers["location"] == "/jobs/default/orders_daily?saved=created"
    clash = b.post("/jobs/new", FORM)
    assert clash.status_code == 409 and 'id="err-name"' in clash.text and "already exists" in clash.text


def test_job_page_grid_history_and_run_with_other_parameters(admin_browser: Browser, ctx: Context) -> None:
    b = admin_browser
    b.post("/jobs/new", {**FORM, "sql_target": "gold.orders_daily", "sql_mode": "merge", "sql_keys": "day"})
    page = b.get("/jobs/default/orders_daily?saved=created").text
    assert "Job created (v1)" in page and "No runs yet" in page and 'name="param.day"' in page
    bad = b.post("/jobs/default/orders_daily/run", {"param.day": "not a date", "environment": "dev"})
    assert bad.status_code == 422 and 'id="err-params-day"' in bad.text and "expected a date" in bad.text
    r = b.post("/jobs/default/orders_daily/run", {"param.day": "2024-02-01", "environment": "dev"})
    assert r.status_code == 303 and r.headers["location"].startswith("/runs/")
    first = r.headers["location"].rsplit("/", 1)[1]
    _finish(ctx, first, "succeeded")
    again = b.get(f"/jobs/default/orders_daily?rerun={first}").text
    assert f'name="rerun_of" value="{first}"' in again and 'value="2024-02-01"' in again
    r = b.post("/jobs/default/orders_daily/run", {"param.day": "2024-02-02", "rerun_of": first})
    second = r.headers["location"].rsplit("/", 1)[1]
    assert runs.get_run(ctx, second, SYSTEM)["input_manifest"]["job"]["params"]["day"] == "2024-02-02"
    page = b.get("/jobs/default/orders_daily").text
    assert page.count('class="job-run"') == 2
    for run_id in (first, second):
        assert f'href="/runs/{run_id}?tab=events"' in page  # each grid cell opens its run
    assert "<code>transform</code>" in page and "<code>publish</code>" in page
    assert 'class="status s-succeeded"' in page and "✓" in page and 'title="transform: succeeded"' in page
    listing = b.get("/jobs").text
    assert "orders_daily" in listing and "on demand" in listing and f'href="/runs/{second}"' in listing


def test_versions_diff_schedule_and_filters(admin_browser: Browser, ctx: Context) -> None:
    b = admin_browser
    b.post("/jobs/new", FORM)
    edit = b.get("/jobs/default/orders_daily/edit").text
    assert 'value="orders_daily"' in edit and "readonly" in edit and "SELECT {{ day }}" in edit
    r = b.post("/jobs/default/orders_daily/edit", {**FORM, "description": "v2 text", "schedule_cron": "0 2 * * *",
                                                     "schedule_timezone": "Europe/Berlin"})
    assert r.status_code == 303 and r.headers["location"].endswith("saved=updated")
    renamed = b.post("/jobs/default/orders_daily/edit", {**FORM, "name": "other"})
    assert renamed.status_code == 422 and 'id="err-name"' in renamed.text
    versions = b.get("/jobs/default/orders_daily?tab=versions&from=1&to=2").text
    assert '<span class="del">-description: Orders per day</span>' in versions
    assert '<span class="add">+description: v2 text</span>' in versions
    sched = b.get("/jobs/default/orders_daily?tab=schedule").text
    assert "<code>0 2 * * *</code>" in sched and "Europe/Berlin" in sched and "Next fire times" in sched
    assert sched.count("UTC</span></li>") == 5
    assert b.post("/jobs/default/orders_daily/pause").status_code == 303
    assert "Resume" in b.get("/jobs/default/orders_daily?tab=schedule").text
    b.post("/jobs/default/orders_daily/resume")
    assert "orders_daily" in b.get("/jobs?type=sql&q=orders").text
    assert "No job matches these filters" in b.get("/jobs?type=python").text
    assert "No job matches" in b.get("/jobs?last=failed").text
    assert "orders_daily" in b.get("/jobs?last=never").text
    assert b.get("/jobs?type=nope").status_code == 422


def test_environments_tab_shows_gates_and_promotes(admin_browser: Browser, ctx: Context) -> None:
    b = admin_browser
    b.post("/jobs/new", FORM)
    page = b.get("/jobs/default/orders_daily?tab=promotion").text
    assert "nothing promoted yet" in page and "v1 has 0 finished runs in dev; 1 needed" in page
    refused = b.post("/jobs/default/orders_daily/promote", {"to": "stage", "version": "1"})
    assert refused.status_code == 409 and 'role="alert"' in refused.text and "1 needed" in refused.text
    promotions.set_gates(ctx, SYSTEM, "default", "stage", {"min_runs": 0, "require_approval": True})
    assert b.post("/jobs/default/orders_daily/promote", {"to": "stage", "version": "1"}).status_code == 303
    page = b.get("/jobs/default/orders_daily?tab=promotion").text
    assert "requested by admin" in page and ">Approve</button>" in page
    own = b.post("/jobs/default/orders_daily/promote", {"to": "stage", "action": "approve"})
    assert own.status_code == 403 and "admin wrote this version" in own.text
    promotions.approve(ctx, SYSTEM, "default", "orders_daily", "stage")
    page = b.get("/jobs/default/orders_daily?tab=promotion").text
    assert "runs <strong>v1</strong>" in page and "promoted" in page


def test_backfill_page_shows_progress(admin_browser: Browser, ctx: Context) -> None:
    b = admin_browser
    b.post("/jobs/new", FORM)
    assert "No backfills yet" in b.get("/jobs/default/orders_daily?tab=backfills").text
    bad = b.post("/jobs/default/orders_daily/backfills", {"from": "2024-02-10", "to": "2024-02-01"})
    assert bad.status_code == 422 and 'role="alert"' in bad.text
    r = b.post("/jobs/default/orders_daily/backfills", {"from": "2024-02-01", "to": "2024-02-05",
                                                         "max_concurrent": "2"})
    assert r.status_code == 303 and r.headers["location"].startswith("/backfills/")
    page = b.get(r.headers["location"]).text
    assert "5 runs, at most 2 at once" in page and 'max="5"' in page and "3 waiting for a slot" in page
    assert 'hx-trigger="every 3s"' in page and "Cancel backfill" in page
    assert b.post(r.headers["location"] + "/cancel").status_code == 303
    page = b.get(r.headers["location"]).text
    assert "s-cancelled" in page and "Retry 5 failed" in page
    assert "2024-02-01 → 2024-02-05" in b.get("/jobs/default/orders_daily?tab=backfills").text


def test_overview_shows_the_next_hour_and_missed_ticks(admin_browser: Browser, ctx: Context) -> None:
    b = admin_browser
    b.post("/jobs/new", {**FORM, "name": "soon", "schedule_cron": "*/5 * * * *"})
    b.post("/jobs/new", {**FORM, "name": "late", "schedule_cron": "0 3 * * *"})
    with ctx.db.write() as conn:  # as if no scheduler ran since this tick was due
        conn.execute(update(jobs_table).where(jobs_table.c.name == "late")
                     .values(next_fire_at=datetime.now(UTC) - timedelta(hours=2)))
    page = b.get("/").text
    assert 'href="/jobs/default/soon?tab=schedule"' in page and "scheduled" in page
    assert "1 job missed its schedule" in page and 'href="/jobs/default/late?tab=schedule"' in page


def test_viewer_sees_jobs_but_no_buttons(browser_for: Any, admin_browser: Browser) -> None:
    admin_browser.post("/jobs/new", FORM)
    v = browser_for("viewer")
    page = v.get("/jobs/default/orders_daily").text
    assert "orders_daily" in page and "Run now" not in page and ">Edit<" not in page
    assert "New job" not in v.get("/jobs").text
    assert v.get("/jobs/new").status_code == 403
    assert v.post("/jobs/new", FORM).status_code == 403
    assert v.post("/jobs/default/orders_daily/run", {}).status_code == 403
    assert v.post("/jobs/default/orders_daily/pause").status_code == 403
