"""Issue 11, server-rendered: what a run produced, reruns that say what they replay, health numbers
that do not mislead, the catalog that answers where/how fresh/who, the SQL workbench's data."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.domain.runs import RunRequest
from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import catalog_for
from lakehouse.services import catalog_view, executors, pipelines, reruns, runs
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, NotFound
from lakehouse.services.sql_check import _our_hints
from lakehouse.web.render import clock, number, plural, short_sha
from tests.web.conftest import Browser

SHA = "0123456789abcdef0123456789abcdef01234567-dirty"
PHASES = [{"name": "ingest", "type": "noop"}, {"name": "validate", "type": "noop", "max_attempts": 1},
          {"name": "publish", "type": "noop"}]
MANIFESTS: dict[str, dict[str, Any]] = {
    "ingest": {"outputs": {"bronze.res_partner": {"staged": "x/res_partner.parquet", "rows": 3,
                                                  "content_hash": "c0ffee" * 10, "columns": ["id", "name"]}},
               "pending_watermarks": {"res_partner": {"column": "write_date", "value": "2026-11-21T09:00:00"}}},
    "validate": {"outputs": {}, "dq": {"checks": 3, "passed": 2, "warnings": 1}},
    "publish": {"outputs": {"bronze.res_partner": {"snapshot_id": 4242424242, "rows": 3,
                                                   "content_hash": "c0ffee" * 10}},
                "watermarks": {"res_partner": {"column": "write_date", "value": "2026-11-21T09:00:00"}}},
}


def _drive(client: TestClient, ex: dict[str, str], run_id: str, fail: str | None = None) -> None:
    while True:
        r = client.post(f"/ops/runs/{run_id}/claim", json={"executor_id": "w-cr", "capabilities": ["noop"]},
                        headers=ex)
        if r.status_code == 204:
            return
        c = r.json()
        if c["phase"] == "ingest":
            body = b"id,name\n1,Azure Interior\n"
            sha = hashlib.sha256(body).hexdigest()
            client.put(f"/ops/artifacts/{sha}", content=body, headers=ex)
            client.post("/ops/artifacts", headers=ex, json={"run_id": run_id, "phase": "ingest", "name": "partners.csv",
                        "sha256": sha, "size_bytes": len(body), "media_type": "text/csv", "metadata": {}})
        if c["phase"] == fail:
            client.post(f"/ops/runs/{run_id}/fail", headers=ex, json={"lease_token": c["lease_token"],
                                                                      "error": "boom", "retryable": False})
            return
        client.post(f"/ops/runs/{run_id}/complete", headers=ex,
                    json={"lease_token": c["lease_token"], "output_manifest": MANIFESTS[c["phase"]]})


def _run(b: Browser, **extra: Any) -> str:
    body = {"spec_slug": "odoo_ingest_bronze", "git_sha": SHA, "environment": "dev", "phases": PHASES,
            "input_manifest": {"pipeline": "odoo_ingest_bronze", "spec_version": 3, "params": {"scale": 2},
                               "watermarks": {"res_partner": {"column": "write_date", "value": "2026-11-20"}}},
            "labels": {"spec_version": "3"}, **extra}
    r = b.client.post("/ops/runs", json=body, headers={"X-CSRF-Token": b.csrf})
    assert r.status_code == 201, r.text
    return str(r.json()["run_id"])


def test_outputs_and_inputs_tabs_say_what_the_run_produced(admin_browser: Browser, executor_token: str) -> None:
    b = admin_browser
    run_id = _run(b)
    _drive(b.client, {"Authorization": f"Bearer {executor_token}"}, run_id)
    out = b.get(f"/runs/{run_id}?tab=outputs").text
    # the committed table links to the catalog and to SQL; the staged one says so
    assert 'href="/catalog/dev/bronze/res_partner"' in out and "Query it" in out
    assert "/sql?sql=SELECT+%2A+FROM+bronze.res_partner+LIMIT+100&amp;env=dev" in out
    assert "4242424242" in out and "c0ffeec0ffee" in out and "staged" in out and "added" in out
    assert "2 of 3 checks passed" in out and "1 warning" in out
    assert "advanced" in out and "proposed, advances on publish" in out and "2026-11-21T09:00:00" in out
    assert "partners.csv" in out and "Preview" in out and 'download="partners.csv"' in out
    assert "Raw output manifest" in out and "pending_watermarks" in out  # the JSON stays one click away
    inputs = b.get(f"/runs/{run_id}?tab=inputs").text
    assert "Spec version" in inputs and "v3" in inputs and SHA in inputs
    assert "<code>scale</code></td><td><code>2</code>" in inputs and "Watermarks at start" in inputs
    assert "Raw input manifest" in inputs
    # the runs list keeps -dirty and shows the spec version
    listing = b.get("/runs").text
    assert "0123456-dirty" in listing and "v3" in listing


def test_event_times_are_clock_times_with_offsets_and_the_page_resumes_after_its_last_event(
        admin_browser: Browser, executor_token: str, ctx: Context) -> None:
    b = admin_browser
    run_id = _run(b)
    _drive(b.client, {"Authorization": f"Bearer {executor_token}"}, run_id)
    page = b.get(f"/runs/{run_id}").text
    events = b.client.get(f"/ops/runs/{run_id}/events").json()["events"]
    assert f'data-last-seq="{events[-1]["seq"]}"' in page
    assert page.count("data-clock") >= len(events) and 'class="offset">+' in page
    assert all(f'data-seq="{e["seq"]}"' in page for e in events)
    t0 = ctx.clock()
    assert str(clock(t0 + timedelta(seconds=75), t0)).endswith('<span class="offset">+1 m 15 s</span>')


def test_short_run_ids(admin_browser: Browser, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    b = admin_browser
    run_id = _run(b)
    r = b.get(f"/runs/{run_id[:8]}?tab=inputs", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == f"/runs/{run_id}?tab=inputs"
    assert reruns.resolve_run_id(ctx, SYSTEM, run_id[:8].upper()) == run_id
    assert reruns.resolve_run_id(ctx, SYSTEM, run_id) == run_id
    assert b.get("/runs/not-a-run").status_code == 404
    # two runs that share a prefix: the short form is ambiguous and names both, a longer one is not
    real = uuid.uuid4
    for fixed in ("abcd1234-0000-4000-8000-000000000001", "abcd5678-0000-4000-8000-000000000002"):
        monkeypatch.setattr(runs, "uuid", type("U", (), {"uuid4": staticmethod(lambda f=fixed: uuid.UUID(f))}))
        runs.create_run(ctx, RunRequest(spec_slug="x", git_sha="g", phases=[{"name": "p", "type": "noop"}]),
                        SYSTEM)
    monkeypatch.setattr(runs, "uuid", uuid)
    assert uuid.uuid4 is real
    with pytest.raises(Conflict) as err:
        reruns.resolve_run_id(ctx, SYSTEM, "abcd")
    assert err.value.code == "ambiguous_run_id" and len(err.value.details["candidates"]) == 2
    assert reruns.resolve_run_id(ctx, SYSTEM, "abcd5678") == "abcd5678-0000-4000-8000-000000000002"
    with pytest.raises(NotFound):
        reruns.resolve_run_id(ctx, SYSTEM, "abce")
    # another workspace's run is not found by its prefix either
    stranger = Principal(name="s", role="engineer", workspace_ids=frozenset({-1}))
    with pytest.raises(NotFound):
        reruns.resolve_run_id(ctx, stranger, "abcd5678")


SPEC = """name: hello_gold
version: {v}
description: one SQL transform into gold
transforms:
  - {{name: greeting, sql: greeting.sql, output: gold.greeting, keys: [id]}}
checks:
  - {{table: gold.greeting, type: freshness, column: at, max_age_hours: 2}}
"""


@pytest.fixture
def pipes(ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "pipes"
    folder.mkdir()
    (folder / "hello.yaml").write_text(SPEC.format(v=1))
    (folder / "greeting.sql").write_text("SELECT 1 AS id, 'hello' AS greeting, now() AS at\n")
    monkeypatch.setattr(ctx.settings, "pipelines_dir", folder)
    return folder


def test_reruns_say_what_they_replay(admin_browser: Browser, executor_token: str, ctx: Context, pipes: Path) -> None:
    b = admin_browser
    first, _ = pipelines.start_run(ctx, SYSTEM, "hello_gold", "dev", {"who": "ada"})
    runs.cancel_run(ctx, first["run_id"], SYSTEM)
    page = b.get(f"/runs/{first['run_id']}").text
    sha = short_sha(first["git_sha"]).replace("sha256:", "")
    assert f"Rerun as it ran <span class=\"small\">(spec v1, sha {sha})</span>" in page
    assert "Run again with the current spec <span class=\"small\">(v1, unchanged)</span>" in page
    (pipes / "hello.yaml").write_text(SPEC.format(v=2).replace("one SQL", "the fixed SQL"))
    page = b.get(f"/runs/{first['run_id']}").text
    assert "Run again with the current spec <span class=\"small\">(v2)</span>" in page
    r = b.post(f"/runs/{first['run_id']}/rerun", {"mode": "current"})
    current = runs.get_run(ctx, r.headers["location"].rsplit("/", 1)[1], SYSTEM)
    assert current["labels"]["spec_version"] == "2" and current["labels"]["rerun_mode"] == "current"
    assert current["input_manifest"]["spec"]["description"] == "the fixed SQL transform into gold"
    assert current["input_manifest"]["params"]["who"] == "ada"
    r = b.post(f"/runs/{first['run_id']}/rerun", {"mode": "as_ran"})
    as_ran = runs.get_run(ctx, r.headers["location"].rsplit("/", 1)[1], SYSTEM)
    assert as_ran["labels"]["spec_version"] == "1" and as_ran["git_sha"] == first["git_sha"]
    assert as_ran["input_manifest"]["spec"]["description"] == "one SQL transform into gold"
    assert "as it ran" in b.get(f"/runs/{as_ran['run_id']}").text  # "Rerun of … as it ran"
    assert b.post(f"/runs/{first['run_id']}/rerun", {"mode": "bogus"}).status_code == 422
    # a run that no spec started can only be replayed as it ran
    plain = _run(b, input_manifest={})
    runs.cancel_run(ctx, plain, SYSTEM)
    assert "current spec" not in b.get(f"/runs/{plain}").text
    assert b.post(f"/runs/{plain}/rerun", {"mode": "current"}).status_code == 409


def test_phase_success_rate_ignores_skipped_phases(admin_browser: Browser, executor_token: str) -> None:
    b = admin_browser
    ex = {"Authorization": f"Bearer {executor_token}"}
    for fail in (None, "ingest", None):
        _drive(b.client, ex, _run(b), fail=fail)
    page = b.get("/").text
    validate = page.split("<td>validate</td>")[1].split("</tr>")[0]
    assert "100.0 %" in validate and "2/2" in validate and "+1 not run" in validate
    ingest = page.split("<td>ingest</td>")[1].split("</tr>")[0]
    assert "66.7 %" in ingest and "2/3" in ingest


def test_executors_stopped_cleanly_and_forgotten(admin_browser: Browser, executor_token: str, ctx: Context,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    b = admin_browser
    _drive(b.client, {"Authorization": f"Bearer {executor_token}"}, _run(b))
    robot = Principal(name="robot", role="executor")
    assert executors.mark_stopped(ctx, robot, "w-cr", "SIGTERM: finished its phase and exited")
    with pytest.raises(NotFound):
        executors.mark_stopped(ctx, robot, "nobody")
    later = ctx.clock() + timedelta(hours=2)
    monkeypatch.setattr(ctx, "clock", lambda: later)
    page = b.get("/executors").text
    assert "s-stopped" in page and "s-stale" not in page and "SIGTERM" in page and "Forget" in page
    assert b.post("/executors/forget", {"executor_id": "w-cr"}).headers["location"] == "/executors?forgotten=1"
    assert "w-cr" not in b.get("/executors").text


def _write(ctx: Context, layer: str, name: str, rows: int) -> None:
    lake_tables.write_table(catalog_for(ctx.settings), layer, "dev", name,
                            pa.table({"month": [f"2026-{i % 12 + 1:02d}" for i in range(rows)],
                                      "amount": [float(i) * 1000.5 for i in range(rows)]}),
                            mode="overwrite", snapshot_properties={"lakehouse.pipeline": "silver_to_gold",
                                                                   "lakehouse.run_id": "r" * 36})


def test_catalog_answers_where_how_fresh_who(admin_browser: Browser, ctx: Context, pipes: Path) -> None:
    _write(ctx, "gold", "revenue_by_month", 1234)
    _write(ctx, "silver", "invoices", 3)
    _write(ctx, "gold", "greeting", 1)
    b = admin_browser
    page = b.get("/catalog?env=dev").text
    assert "gold.revenue_by_month" in page and "1,234" in page and "silver_to_gold" in page
    assert "s-fresh" in page and "SLO 24 h" in page and "SLO 2 h" in page  # the spec's freshness check wins
    assert "/warehouse" in page or "warehouse" in page
    assert "gold.revenue_by_month" in b.get("/catalog?env=dev&q=revenue").text
    assert "silver.invoices" not in b.get("/catalog?env=dev&q=revenue").text
    assert "No table matches" in b.get("/catalog?env=dev&state=late").text
    assert b.get("/catalog?state=bogus").status_code == 422
    rows = catalog_view.list_tables(ctx, SYSTEM, env="dev", layer="gold")
    later = catalog_view.freshness(rows[0]["last_written"], timedelta(hours=2), ctx.clock() + timedelta(hours=3))
    assert later["state"] == "late" and later["fill"] == 100.0
    aging = catalog_view.freshness(rows[0]["last_written"], timedelta(hours=2), ctx.clock() + timedelta(minutes=100))
    assert aging["state"] == "aging"
    table = b.get("/catalog/dev/gold/revenue_by_month").text
    assert "Query in SQL" in table and "/sql?sql=SELECT+%2A+FROM+gold.revenue_by_month+LIMIT+100&amp;env=dev" in table
    assert "1 snapshot " in table or "1 snapshot<" in table or "· 1 snapshot" in table
    assert "snapshot(s)" not in table and "Metadata file" in table and "silver_to_gold" in table


def test_sql_workbench_data(admin_browser: Browser, ctx: Context) -> None:
    b = admin_browser
    empty = b.get("/sql").text
    assert 'placeholder="SELECT 42 AS answer"' in empty  # no table to name yet: no made-up one
    _write(ctx, "gold", "revenue_by_month", 5)
    page = b.get("/sql").text
    assert 'placeholder="SELECT * FROM gold.revenue_by_month LIMIT 10"' in page
    assert '"gold.revenue_by_month":["month","amount"]' in page  # completion: schema.table → columns
    assert 'data-insert="amount"' in page and "double" in page  # the schema browser with types
    r = b.post("/sql", {"sql": "SELECT month, sum(amount) AS total FROM gold.revenue_by_month GROUP BY 1 ORDER BY 1",
                        "env": "dev"}, headers={"HX-Request": "true"})
    assert 'class="num" data-v="' in r.text and "DOUBLE" in r.text and 'class="chart-y"' in r.text
    assert 'id="sql-history" hx-swap-oob="true"' in r.text and "sum(amount)" in r.text  # history refreshed
    hint = _our_hints('Catalog Error: … exists in the spatial extension. Please try installing and loading the '
                      "spatial extension: INSTALL spatial; LOAD spatial;")
    assert "INSTALL" not in hint and "not available to lakehouse queries" in hint
    err = b.post("/sql", {"sql": "SELECT ST_Point(1, 2)", "env": "dev"}, headers={"HX-Request": "true"}).text
    assert "INSTALL" not in err


def test_formatting_helpers() -> None:
    assert number(1234567) == "1,234,567" and number(1234.5) == "1,234.50" and number(None) == "—"
    # DECIMAL values arrive as exact text: grouped, never rounded; other text stays as it is
    assert number("76509.11") == "76,509.11" and number("-1234567.005") == "-1,234,567.005"
    assert number("12") == "12" and number("2024-12-01") == "2024-12-01" and number("NaN") == "NaN"
    assert plural(1, "snapshot") == "1 snapshot" and plural(3, "snapshot") == "3 snapshots"
    assert short_sha(SHA) == "0123456-dirty" and short_sha("sha256:abcdef0123456789") == "sha256:abcdef0"


def test_counts_in_templates_agree_with_their_noun() -> None:
    """No "1 events" or "1 snapshot(s)": a count printed before a plural noun goes through ``plural``."""
    templates = Path(__file__).parents[2] / "src" / "lakehouse" / "web" / "templates"
    bare = re.compile(r"\{\{[^}|]*(\|number)?\s*\}\} (rows|events|runs|snapshots|tables|phases|artifacts|queries)\b"
                      r"|\(s\)")
    found = [f"{p.name}: {m.group(0)}" for p in sorted(templates.glob("*.html")) for m in bare.finditer(p.read_text())
             if p.name != "caps.html"]  # caps.html: "N phases" of a cap is its limit, never 1 in practice
    assert not found, found
