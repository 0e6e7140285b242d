"""Browser tests: Playwright for Python driving Debian's chromium against a real `lakehouse serve`
and a real worker. Each page's screenshot is written to build/screenshots/.

Never `playwright install`: the browser is /usr/bin/chromium (scripts/browser-deps.sh installs it).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lakehouse.services import auth
from lakehouse.services.context import Context
from tests.e2e.harness import Server, running_server, spawn_worker, stop

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).parents[2] / "build" / "screenshots"
PASSWORD = "correct horse battery"
SPEC = """name: hello_gold
version: 1
description: The smallest pipeline; one SQL transform into gold.
transforms:
  - {name: greeting, sql: greeting.sql, output: gold.greeting, keys: [id]}
  - {name: loud, sql: loud.sql, output: gold.loud_greeting, keys: [id]}
checks:
  - {table: gold.greeting, type: row_count, min: 1}
"""


@pytest.fixture
def stack(ctx: Context, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if os.environ.get("LAKEHOUSE_SKIP_BROWSER") == "1":
        pytest.skip("LAKEHOUSE_SKIP_BROWSER=1")
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need /usr/bin/chromium: run `bash scripts/browser-deps.sh` (make test does)")
    pipes = tmp_path / "pipelines"
    pipes.mkdir()
    (pipes / "hello.yaml").write_text(SPEC)
    (pipes / "greeting.sql").write_text("SELECT 1 AS id, 'hello' AS greeting UNION ALL SELECT 2, 'world'\n")
    (pipes / "loud.sql").write_text("SELECT id, upper(greeting) AS greeting FROM gold.greeting\n")
    auth.create_user(ctx, "ada", "admin", PASSWORD)
    auth.create_user(ctx, "vera", "viewer", PASSWORD)
    auth.create_user(ctx, "bot", "executor", None)
    exec_token = auth.create_token(ctx, "bot")
    with running_server(ctx.settings.home, ctx.settings.database_url, pipelines_dir=pipes,
                        secret_key=ctx.settings.secret_key) as server:
        workers: list[Any] = []
        yield {"server": server, "exec_token": exec_token, "workers": workers, "logs": tmp_path}
        stop(workers)


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM),
                              args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        yield b
        b.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")


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
    page.locator("#sql-text").fill("SELECT id, greeting FROM gold.greeting ORDER BY id")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator("#sql-result table")).to_contain_text("world")
    shot(page, "07-sql")
    page.locator("#sql-text").fill("SELECT id,\n  nope FROM gold.greeting")
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
