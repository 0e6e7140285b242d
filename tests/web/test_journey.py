"""The product's definition of done, walked in a real browser (Playwright on Debian's chromium) against
a real `lakehouse serve` and a real `lakehouse worker`:

log in → create a Postgres connection (to a source database of this test session) and test it →
create a SQL job with a parameter that runs on that connection → run it (a real worker gets the
connection for its lease and runs the statement there, read-only) → watch it succeed with its events →
see the result, read from the source → run it again with another parameter → both runs in the history.

Never `playwright install`: the browser is /usr/bin/chromium.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from lakehouse.services import auth
from lakehouse.services.context import Context
from tests.e2e.harness import Server, running_server, spawn_worker, stop
from tests.jobs.pg_source import pg_source  # noqa: F401  (a session fixture: people(who, greeting))

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).parents[2] / "build" / "screenshots"
PASSWORD = "correct horse battery"
QUERY = ("SELECT greeting || ' ' || who AS greeting, who, current_database() AS source "
         "FROM people WHERE who = {{ who }}")


@pytest.fixture
def stack(ctx: Context, tmp_path: Path, pg_source: dict[str, Any]) -> Iterator[dict[str, Any]]:  # noqa: F811
    if os.environ.get("LAKEHOUSE_SKIP_BROWSER") == "1":
        pytest.skip("LAKEHOUSE_SKIP_BROWSER=1")
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need /usr/bin/chromium: run `bash scripts/browser-deps.sh` (make test does)")
    pipes = tmp_path / "pipelines"
    pipes.mkdir()
    auth.create_user(ctx, "ada", "admin", PASSWORD)
    auth.create_user(ctx, "bot", "executor", None)
    token = auth.create_token(ctx, "bot")
    with running_server(ctx.settings.home, ctx.settings.database_url, pipelines_dir=pipes,
                        secret_key=ctx.settings.secret_key) as server:
        workers = [spawn_worker(server, token, "w-journey", tmp_path)]
        try:
            yield {"server": server, "pg": urlsplit(pg_source["dsn"])}
        finally:
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
    page.screenshot(path=str(SHOTS / f"journey-{name}.png"), full_page=True)


def wait_succeeded(page: Any) -> str:
    from playwright.sync_api import expect

    page.wait_for_url(re.compile(r".*/runs/[0-9a-f-]{36}$"))
    run_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#run-live")).to_have_attribute("data-status", "succeeded", timeout=90_000)
    expect(page.locator("#events")).to_contain_text("RUN_SUCCEEDED")
    expect(page.locator("#events")).to_contain_text("PHASE_SUCCEEDED")
    expect(page.locator("#events")).to_contain_text("CONNECTION_USED")  # the source, handed for the lease
    return str(run_id)


def see_result(page: Any, base: str, run_id: str) -> Any:
    """From the run's outputs, one click to the table it published, with its rows."""
    page.goto(f"{base}/runs/{run_id}?tab=outputs")
    page.locator("table.out-tables a", has_text="gold.journey_greeting").first.click()
    page.wait_for_url(re.compile(r".*/catalog/.*journey_greeting.*"))
    return page.locator("table.datagrid")


def test_definition_of_done(stack: dict[str, Any], browser: Any) -> None:
    from playwright.sync_api import expect

    server: Server = stack["server"]
    base = server.base
    pg = stack["pg"]
    page = browser.new_page(viewport={"width": 1440, "height": 900}, color_scheme="light")
    page.set_default_timeout(20_000)

    # log in
    page.goto(f"{base}/login")
    page.get_by_label("User name").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")

    # a Postgres connection to this test session's database, tested from the page
    page.goto(f"{base}/connections?new=postgres")
    form = page.locator("form[action='/connections']")
    form.locator("input[name='name']").fill("journey_pg")
    for field, value in (("host", pg.hostname or "127.0.0.1"), ("port", str(pg.port or 5432)),
                         ("database", pg.path.lstrip("/")), ("user", pg.username or "postgres")):
        form.locator(f"input[name='f_{field}']").fill(value)
    form.get_by_role("button", name="Create connection").click()
    page.wait_for_url(re.compile(r".*/connections/\d+$"))
    page.goto(f"{base}/connections")
    page.get_by_role("row", name=re.compile("journey_pg")).get_by_role("button", name="Test").click()
    expect(page.locator("td[id^='test-']").first).to_contain_text("connected to PostgreSQL")
    shot(page, "01-connection")

    # a SQL job with a parameter, from the job form (the keyboard reaches every field)
    page.goto(f"{base}/jobs")
    expect(page.locator(".empty")).to_contain_text("No jobs yet")
    page.get_by_role("button", name="New job").click()
    page.wait_for_url(f"{base}/jobs/new")
    page.locator("input[name='name']").fill("journey_greeting")
    page.get_by_label("Description").fill("Greets whoever the run names")
    page.get_by_label("Parameter 1 name").fill("who")
    page.get_by_label("Parameter 1 type").select_option("string")
    page.get_by_label("Parameter 1 default").fill("world")
    page.get_by_label("Query").fill(QUERY)
    page.get_by_label("Runs on").select_option("journey_pg")  # the statement runs on the source, read-only
    page.get_by_label("Target table").fill("gold.journey_greeting")
    page.get_by_label("Write mode").select_option("merge")
    page.get_by_label("Merge keys").fill("who")
    page.get_by_role("checkbox", name="journey_pg").check()
    shot(page, "02-job-form")
    page.get_by_role("button", name="Create job").click()
    page.wait_for_url(f"{base}/jobs/default/journey_greeting?saved=created")
    expect(page.get_by_role("status")).to_contain_text("Job created (v1)")

    # run it; a real worker takes its phases; the run page goes to succeeded live, with its events
    page.locator("input[name='param.who']").fill("world")
    page.get_by_role("button", name="Run now").click()
    first = wait_succeeded(page)
    shot(page, "03-first-run")

    # the result
    result = see_result(page, base, first)
    expect(result).to_contain_text("hello world")
    expect(result).to_contain_text(pg.path.lstrip("/"))  # current_database(): it ran on the source
    shot(page, "04-result")

    # run it again with another parameter (same version), from the job's history
    page.goto(f"{base}/jobs/default/journey_greeting")
    page.get_by_role("link", name="run again…").first.click()
    expect(page.locator("input[name='rerun_of']")).to_have_value(first)
    page.locator("input[name='param.who']").fill("lakehouse")
    page.get_by_role("button", name="Run again").click()
    second = wait_succeeded(page)
    assert second != first
    result = see_result(page, base, second)
    expect(result).to_contain_text("hi lakehouse")
    expect(result).to_contain_text("hello world")  # merged on `who`, not overwritten

    # both runs in the job's history, each cell of the grid one click from its run
    page.goto(f"{base}/jobs/default/journey_greeting")
    history = page.locator("tr.job-run")
    expect(history).to_have_count(2)
    for run_id in (first, second):
        expect(page.locator(f"tr.job-run a[href='/runs/{run_id}']")).to_be_visible()
    expect(history.locator(".s-succeeded")).to_have_count(2)
    expect(page.locator("table.runs-grid a.gcell")).to_have_count(4)  # 2 runs by (transform, publish)
    shot(page, "05-history")
    page.locator("table.runs-grid a.gcell").first.click()
    page.wait_for_url(re.compile(r".*/runs/.*tab=events"))
    expect(page.locator("h1")).to_contain_text("succeeded")
