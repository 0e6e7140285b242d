"""Browser tests: Playwright for Python driving Debian's chromium against a real `lakehouse serve`
and a real worker. Each page's screenshot is written to build/screenshots/.

Never `playwright install`: the browser is /usr/bin/chromium (scripts/browser-deps.sh installs it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Server, spawn_worker

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

SHOTS = Path(__file__).parents[2] / "build" / "screenshots"
PASSWORD = "correct horse battery"  # the `stack` fixture (conftest.py) creates ada and vera with it


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")


def sql_text(page: Any, text: str) -> None:
    """Replace the SQL editor's text (CodeMirror hides the textarea it stands for)."""
    page.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def _ensure_artifact(server: Server, token: str, run_id: str) -> None:
    ex = {"Authorization": f"Bearer {token}"}
    arts = httpx.get(f"{server.base}/ops/runs/{run_id}/artifacts", headers=ex).json()["artifacts"]
    if arts:
        return
    body = b"table,rows\ngold.greeting,2\n"
    sha = hashlib.sha256(body).hexdigest()
    httpx.put(f"{server.base}/ops/artifacts/{sha}", content=body, headers=ex).raise_for_status()
    httpx.post(f"{server.base}/ops/artifacts", headers=ex, json={
        "run_id": run_id, "phase": "publish", "name": "summary.csv", "sha256": sha, "size_bytes": len(body),
        "media_type": "text/csv", "metadata": {}}).raise_for_status()


def test_control_room_in_a_browser(stack: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    server: Server = stack["server"]
    base = server.base
    page = browser.new_page(viewport={"width": 1440, "height": 900}, color_scheme="light")
    page.set_default_timeout(20_000)
    page.goto(f"{base}/login")
    shot(page, "01-login")
    log_in(page, base, "ada")
    shot(page, "02-overview-empty")

    # start a pipeline run from the Pipelines page
    page.goto(f"{base}/pipelines")
    expect(page.get_by_role("link", name="hello_gold")).to_be_visible()
    shot(page, "03-pipelines")
    page.get_by_role("row", name="hello_gold").get_by_role("button", name="Run").click()
    page.wait_for_url(f"{base}/runs/*")
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#run-live")).to_have_attribute("data-status", "queued")

    # a worker starts; the page goes to succeeded live, without a reload
    stack["workers"].append(spawn_worker(server, stack["exec_token"], "w-browser", stack["logs"]))
    expect(page.locator("#run-live")).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(page.locator("#events")).to_contain_text("RUN_SUCCEEDED")
    expect(page.locator("h1")).to_contain_text("succeeded")
    shot(page, "04-run-succeeded-live")

    # open an artifact
    _ensure_artifact(server, stack["exec_token"], run_id)
    page.goto(f"{base}/runs/{run_id}?tab=artifacts")
    shot(page, "05-run-artifacts")
    page.locator("table a[href*='/artifacts/']").first.click()
    expect(page.locator("pre.preview")).to_be_visible()
    shot(page, "06-artifact-preview")

    # run a SQL query
    page.goto(f"{base}/sql")
    sql_text(page, "SELECT id, greeting FROM gold.greeting ORDER BY id")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#sql-result table")).to_contain_text("world")
    shot(page, "07-sql")
    sql_text(page, "SELECT id,\n  nope FROM gold.greeting")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#sql-result")).to_contain_text("line 2")
    shot(page, "08-sql-error")

    # the other pages, for the record
    for name, url in [("09-overview", "/"), ("10-runs", "/runs"), ("11-executors", "/executors"),
                      ("12-catalog", "/catalog"), ("13-table", "/catalog/dev/gold/loud_greeting"),
                      ("14-connections", "/connections?new=postgres"), ("15-audit", "/audit"),
                      ("16-users", "/admin/users"), ("17-pipeline", "/pipelines/hello_gold")]:
        page.goto(f"{base}{url}")
        expect(page.locator("main h1").first).to_be_visible()
        shot(page, name)
    page.goto(f"{base}/catalog/dev/gold/loud_greeting")
    expect(page.locator("#lineage-graph canvas").first).to_be_attached()  # cytoscape drew the graph
    dark = browser.new_page(viewport={"width": 1440, "height": 900}, color_scheme="dark")
    dark.context.add_cookies(page.context.cookies())
    dark.goto(f"{base}/runs/{run_id}")
    shot(dark, "18-run-dark")
    dark.close()

    # a viewer sees no actions and is refused when trying anyway
    page.get_by_role("button", name="Log out").click()
    log_in(page, base, "vera")
    page.goto(f"{base}/runs/{run_id}")
    expect(page.get_by_role("button", name="Rerun")).to_have_count(0)
    token = page.locator("body").get_attribute("hx-headers")
    status = page.evaluate("""async ([url, headers]) => {
        const r = await fetch(url, {method: "POST", headers: JSON.parse(headers)});
        return r.status; }""", [f"/runs/{run_id}/rerun", token])
    assert status == 403
    page.goto(f"{base}/audit")
    expect(page.locator("h1")).to_have_text("Not allowed")
    shot(page, "19-viewer-refused")
    page.close()


# --- issue 11: the journeys -------------------------------------------------------------------------

def _start_and_finish(page: Any, base: str, stack: dict[str, Any]) -> str:
    """Start hello_gold from the Pipelines page, let a worker run it live; the run id."""
    from playwright.sync_api import expect

    page.goto(f"{base}/pipelines")
    page.get_by_role("row", name="hello_gold").get_by_role("button", name="Run").click()
    page.wait_for_url(f"{base}/runs/*")
    if not stack["workers"]:
        stack["workers"].append(spawn_worker(stack["server"], stack["exec_token"], "w-journey", stack["logs"]))
    expect(page.locator("#run-live")).to_have_attribute("data-status", "succeeded", timeout=60_000)
    return str(page.url.rsplit("/", 1)[1].split("?")[0])


def test_live_page_never_shows_an_event_twice_and_outputs_link_to_the_lake(stack: dict[str, Any], browser: Any
                                                                         ) -> None:
    from playwright.sync_api import expect

    base = stack["server"].base
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(20_000)
    log_in(page, base, "ada")
    run_id = _start_and_finish(page, base, stack)  # the page was open, live, from queued to succeeded
    expect(page.locator("#events")).to_contain_text("RUN_SUCCEEDED")
    shown = [int(s) for s in page.locator("#events tr").evaluate_all("rows => rows.map(r => r.dataset.seq)")]
    api = httpx.get(f"{base}/ops/runs/{run_id}/events", headers={"Authorization": f"Bearer {stack['exec_token']}"})
    seqs = [e["seq"] for e in api.json()["events"]]
    assert sorted(shown) == seqs and len(shown) == len(set(shown)), (shown, seqs)
    expect(page.locator("#events td.when .offset").first).to_contain_text("+")
    # a reload resumes after the last rendered event: still each once
    page.reload()
    page.wait_for_timeout(500)
    again = [int(s) for s in page.locator("#events tr").evaluate_all("rows => rows.map(r => r.dataset.seq)")]
    assert again == seqs

    # Outputs: tables written with working links to the catalog and to SQL
    page.goto(f"{base}/runs/{run_id}?tab=outputs")
    publish = page.locator("#out-publish")
    expect(publish.locator("table.out-tables")).to_contain_text("gold.greeting")
    expect(publish.get_by_text("Raw output manifest")).to_be_visible()
    shot(page, "20-run-outputs")
    publish.get_by_role("link", name="gold.greeting", exact=True).click()
    expect(page.locator("main h1")).to_contain_text("gold.greeting")
    page.go_back()
    page.locator("#out-publish tr", has_text="gold.loud_greeting").get_by_role("link", name="Query it").click()
    page.wait_for_url(f"{base}/sql?*")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#sql-result table")).to_contain_text("HELLO")
    page.goto(f"{base}/runs/{run_id}?tab=inputs")
    expect(page.locator("section.inputs")).to_contain_text("Spec version")
    shot(page, "21-run-inputs")
    page.close()


def test_rerun_as_it_ran_or_with_the_current_spec(stack: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    base = stack["server"].base
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(20_000)
    log_in(page, base, "ada")
    run_id = _start_and_finish(page, base, stack)
    expect(page.locator(".meta")).to_contain_text("v1")
    # a fix lands: the spec is now version 2
    spec = stack["logs"] / "pipelines" / "hello.yaml"
    spec.write_text(spec.read_text().replace("version: 1", "version: 2"))
    page.reload()
    as_ran = page.get_by_role("button", name="Rerun as it ran")
    expect(as_ran).to_contain_text("spec v1, sha")
    current = page.get_by_role("button", name="Run again with the current spec")
    expect(current).to_contain_text("(v2)")
    shot(page, "22-rerun-choices")
    current.click()
    page.wait_for_url(lambda url: run_id not in url)
    expect(page.locator(".meta")).to_contain_text("v2")
    expect(page.locator(".meta")).to_contain_text("with the current spec")
    expect(page.locator("#run-live")).to_have_attribute("data-status", "succeeded", timeout=60_000)
    page.goto(f"{base}/runs/{run_id}")
    page.get_by_role("button", name="Rerun as it ran").click()
    page.wait_for_url(lambda url: run_id not in url)
    expect(page.locator(".meta")).to_contain_text("v1")
    expect(page.locator(".meta")).to_contain_text("as it ran")
    page.goto(f"{base}/runs")
    expect(page.locator("table.runs")).to_contain_text("v2")
    page.close()


def test_catalog_table_sql_chart_and_completion(stack: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    base = stack["server"].base
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(20_000)
    log_in(page, base, "ada")
    _start_and_finish(page, base, stack)
    page.goto(f"{base}/catalog")
    expect(page.locator("table.catalog")).to_contain_text("hello_gold")
    page.get_by_label("Search tables").fill("loud")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(f"{base}/catalog?q=loud&env=dev&layer=&state=&pipeline=")
    expect(page.locator("table.catalog tbody tr")).to_have_count(1)
    shot(page, "23-catalog")
    page.get_by_role("link", name="gold.loud_greeting").click()
    expect(page.locator("main h1")).to_contain_text("gold.loud_greeting")
    expect(page.locator(".table-meta")).to_contain_text("hello_gold")
    # lineage labels never overlap
    page.wait_for_function("() => window.lineageCy && window.lineageCy.nodes().length > 1")
    overlaps = page.evaluate("""() => {
        const boxes = window.lineageCy.nodes().map(n => n.boundingBox({includeLabels: true}));
        let n = 0;
        for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
          const a = boxes[i], b = boxes[j];
          if (a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2) n++;
        }
        return n; }""")
    assert overlaps == 0
    shot(page, "24-table")
    page.get_by_role("button", name="Query in SQL").click()
    page.wait_for_url(f"{base}/sql?*")
    expect(page.locator("html")).to_have_attribute("data-sql-editor", "ready")
    expect(page.locator(".cm-content")).to_contain_text("SELECT * FROM gold.loud_greeting")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#sql-result table")).to_contain_text("WORLD")
    expect(page.locator("#sql-result th").first).to_contain_text("INTEGER")
    expect(page.locator("#sql-history")).to_contain_text("gold.loud_greeting")  # history refreshed
    page.locator("#sql-result th button.sort").first.click()
    page.locator("#sql-result th button.sort").first.click()  # descending
    expect(page.locator("#sql-result tbody tr").first).to_contain_text("WORLD")
    page.get_by_role("link", name="Chart").click()
    expect(page.locator("#result-chart canvas")).to_be_attached()
    page.locator("#result-chart .chart-kind").select_option("line")
    expect(page.locator("#result-chart canvas")).to_have_count(1)
    shot(page, "25-sql-chart")
    # completion offers a real column
    page.locator(".cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.type("SELECT gold.loud_greeting.gr")
    page.keyboard.press("Control+Space")
    expect(page.locator(".cm-tooltip-autocomplete")).to_contain_text("greeting")
    shot(page, "26-sql-completion")
    dark = browser.new_page(viewport={"width": 1440, "height": 900}, color_scheme="dark")
    dark.context.add_cookies(page.context.cookies())
    for name, url in (("27-catalog-dark", "/catalog"), ("28-sql-dark", "/sql"), ("29-executors-dark", "/executors")):
        dark.goto(f"{base}{url}")
        shot(dark, name)
    dark.close()
    page.close()
