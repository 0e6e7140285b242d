"""Every page of the Control Room, in the light and the dark theme, into build/screenshots/.

The pages are not listed by hand: every GET route of the app's page routers is visited, so a new page
is photographed (and must answer 200) the day it lands. A page with a path parameter needs an example
below (a run, a table, a job, a connection, a backfill, an artifact, a query …); a new one without an
example fails the test and says so. Each page must answer 200, show no server error, throw no script
error, load every asset it asks for, and keep its destructive buttons and status badges readable
(WCAG contrast ≥ 4.5:1) in both themes.

Never `playwright install`: the browser is /usr/bin/chromium.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from lakehouse.api.app import create_app
from lakehouse.services.context import Context
from tests.web.test_browser import SHOTS, _ensure_artifact, _start_and_finish, log_in

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

JOB_FORM = {"name": "orders_daily", "type": "sql", "description": "Orders per day", "environment": "dev",
            "param_rows": "2", "param_name_0": "day", "param_type_0": "date", "param_default_0": "2024-01-01",
            "param_name_1": "", "sql_query": "SELECT {{ day }} AS day, 42 AS n", "sql_engine": "duckdb",
            "sql_mode": "overwrite"}
# GET routes of the page routers that are not pages: they must answer 200, nobody photographs them
NOT_PAGES = {"/runs/{run_id}/live": "the live fragment of the run page",
             "/sql/queries/{query_id}/result.{fmt}": "a download"}
# more than one view of a page worth a picture: (name, url template)
VARIANTS = [("run-outputs", "/runs/{run_id}?tab=outputs"), ("run-inputs", "/runs/{run_id}?tab=inputs"),
            ("run-artifacts", "/runs/{run_id}?tab=artifacts"), ("run-dq", "/runs/{run_id}?tab=dq"),
            ("run-lineage", "/runs/{run_id}?tab=lineage"), ("connections-new", "/connections?new=postgres"),
            ("job-backfills", "/jobs/default/orders_daily?tab=backfills"), ("sql-query", "/sql?query={query_id}"),
            ("alerts-rules", "/alerts?tab=rules"), ("alerts-routing", "/alerts?tab=routing")]
# the colour pairs that must read in both themes: destructive buttons, status badges, alerts
CONTRAST_JS = """(selector) => {
  const rgb = s => { const m = s.match(/[\\d.]+/g).map(Number);
                     return {r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1}; };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
                     return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.a > 0.5) return c;
    }
    return rgb(getComputedStyle(document.body).backgroundColor); };
  const bad = [];
  for (const el of document.querySelectorAll(selector)) {
    if (!el.offsetParent || !el.textContent.trim()) continue;
    const fg = rgb(getComputedStyle(el).color), bg = background(el);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    if (ratio < 4.5) bad.push(`${el.outerHTML.slice(0, 80)} ${ratio.toFixed(2)}:1`);
  }
  return bad; }"""
READABLE = "button.danger, .status, .alert, .notice, .banner.bad, .error-line"


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for r in routes:
        included = getattr(r, "original_router", None)  # FastAPI ≥ 0.16x includes routers lazily
        if included is not None:
            yield from _routes(included.routes, prefix + r.include_context.prefix)
        else:
            yield prefix + getattr(r, "path", ""), r


def page_routes(ctx: Context) -> list[str]:
    """Every GET route of the Control Room's page routers (not the API, not static files)."""
    app = create_app(ctx, reaper=False)
    paths = {path for path, r in _routes(app.routes)
             if isinstance(r, APIRoute) and "GET" in (r.methods or set()) and not r.include_in_schema
             and not path.startswith(("/api/", "/ops/", "/iceberg", "/docs", "/redoc"))}
    return sorted(paths)


def shot_name(template: str) -> str:
    if template == "/":
        return "overview"
    parts = template.strip("/").split("/")
    named = [p for p in parts if "{" not in p] + (["detail"] if "{" in parts[-1] else [])
    return "-".join(named)  # /jobs/{workspace}/{name}/edit → jobs-edit, /runs/{run_id} → runs-detail


def seed(page: Any, base: str, stack: dict[str, Any], ctx: Context) -> dict[str, str]:
    """A run (with outputs and an artifact), a job and its backfill, a connection and a query; the values
    of the path parameters of every page."""
    run_id = _start_and_finish(page, base, stack)
    _ensure_artifact(stack["server"], stack["exec_token"], run_id)
    csrf = json.loads(page.locator("body").get_attribute("hx-headers"))["X-CSRF-Token"]

    def post(url: str, form: dict[str, str]) -> str:
        r = page.request.post(f"{base}{url}", form={"csrf_token": csrf, **form}, max_redirects=0)
        assert r.status == 303, (url, r.status, r.text()[:500])
        return str(r.headers["location"])

    post("/jobs/new", JOB_FORM)
    backfill = post("/jobs/default/orders_daily/backfills", {"from": "2024-02-01", "to": "2024-02-03",
                                                             "max_concurrent": "2"}).rsplit("/", 1)[1]
    sources = ctx.settings.home / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    import sqlite3

    sqlite3.connect(sources / "shop.db").executescript("CREATE TABLE IF NOT EXISTS orders (id INTEGER);")
    conn = post("/connections", {"type": "sqlite", "name": "shop", "workspace": "default", "environment": "dev",
                                 "f_path": str(sources / "shop.db")}).rsplit("/", 1)[1]
    r = page.request.post(f"{base}/sql", form={"csrf_token": csrf, "sql": "SELECT * FROM gold.greeting",
                                               "env": "dev"})
    assert r.ok, r.text()[:500]
    queries = page.request.get(f"{base}/api/queries").json()["queries"]
    arts = httpx.get(f"{base}/ops/runs/{run_id}/artifacts",
                     headers={"Authorization": f"Bearer {stack['exec_token']}"}).json()["artifacts"]
    return {"run_id": run_id, "sha256": arts[0]["sha256"], "name": "hello_gold", "env": "dev", "layer": "gold",
            "table": "greeting", "workspace": "default", "conn_id": conn, "backfill_id": backfill,
            "query_id": str(queries[0]["query_id"]), "fmt": "csv", "alert_id": str(_seed_alert(ctx))}


def _seed_alert(ctx: Context) -> int:
    """An open critical alert of a run_failed rule (fired as a failing run fires it)."""
    from lakehouse.domain.principal import SYSTEM
    from lakehouse.services import alert_fire, alerts
    from lakehouse.store import alerts as alert_store

    rule = alerts.create_rule(ctx, SYSTEM, "default", {"name": "nightly-failed", "kind": "run_failed",
                                                       "severity": "critical", "pipeline": "nightly"})
    with ctx.db.write() as conn:
        row = alert_store.get_rule(conn, None, rule["id"])
        assert row is not None
        return alert_fire.fire(conn, row, "dev/nightly", "run of dev/nightly failed: boom", {"error": "boom"},
                               ctx.clock())


def fill(template: str, values: dict[str, str]) -> str:
    # /jobs/{workspace}/{name}: the job, not the pipeline
    values = {**values, "name": "orders_daily"} if template.startswith("/jobs/") else values
    missing = [p for p in re.findall(r"{(\w+)}", template) if p not in values]
    assert not missing, f"{template}: add an example value for {missing} to seed() in {__file__}"
    return re.sub(r"{(\w+)}", lambda m: values[m.group(1)], template)


def visit(page: Any, url: str, problems: list[str]) -> None:
    answer = page.goto(url)
    assert answer is not None, url
    if answer.status != 200:
        problems.append(f"{url}: HTTP {answer.status}")
        return
    page.wait_for_load_state("networkidle")
    body = page.locator("body").inner_text()
    if "Internal Server Error" in body or "Traceback" in body:
        problems.append(f"{url}: a server error on the page")
    for bad in page.evaluate(CONTRAST_JS, READABLE):
        problems.append(f"{url}: low contrast {bad}")


def test_every_page_in_light_and_dark(stack: dict[str, Any], browser: Any, ctx: Context) -> None:
    base = stack["server"].base
    routes = page_routes(ctx)
    assert {"/", "/runs", "/runs/{run_id}", "/catalog", "/sql", "/login"} <= set(routes), routes
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(20_000)
    log_in(page, base, "ada")
    values = seed(page, base, stack, ctx)
    cookies = page.context.cookies()
    for template, why in NOT_PAGES.items():
        assert template in routes, f"{template} ({why}) is gone: drop it from NOT_PAGES"
        r = page.request.get(base + fill(template, values))
        assert r.status == 200, (template, r.status)
    pages = [(shot_name(t), fill(t, values)) for t in routes if t not in NOT_PAGES]
    pages += [(name, fill(t, values)) for name, t in VARIANTS]
    page.close()
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for theme in ("light", "dark"):
        context = browser.new_context(viewport={"width": 1440, "height": 900}, color_scheme=theme)
        context.set_default_timeout(20_000)
        errors: list[str] = []
        context.on("weberror", lambda e, errors=errors: errors.append(f"script error: {e.error}"))
        context.on("response", lambda r, errors=errors: errors.append(f"{r.url}: HTTP {r.status}")
                   if r.status >= 400 and "/static/" in r.url else None)
        anon = context.new_page()
        visit(anon, f"{base}/login", problems)  # the login page as a visitor sees it
        anon.screenshot(path=str(SHOTS / f"login-{theme}.png"), full_page=True)
        anon.close()
        context.add_cookies(cookies)
        tab = context.new_page()
        for name, url in pages:
            if url == "/login":
                continue
            visit(tab, base + url, problems)
            tab.screenshot(path=str(SHOTS / f"{name}-{theme}.png"), full_page=True)
        problems += [f"{theme}: {e}" for e in errors]
        context.close()
    assert not problems, "\n".join(problems)
    for name, _url in pages:
        assert (SHOTS / f"{name}-light.png").stat().st_size > 0 and (SHOTS / f"{name}-dark.png").exists()
