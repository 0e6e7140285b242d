"""Attacks through SQL (issue 10, items 7 and 8): starving the control plane with queries, exceeding
the admin's limits, reading other queries' spill files, and a viewer downloading results.

Slow queries are made deterministic: ``blocker`` holds a query inside its result stream (its DuckDB
connection and temp folder open) until the test releases it, so "while the queries still run" is an
event, not a duration.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from lakehouse.lake.blobstore import BlobStore
from lakehouse.services.sql_results import ResultSink
from lakehouse.settings import Settings
from tests.security.conftest import PASSWORD, Attack

BOUND_S = 60  # how long a test waits for something that should happen at once before failing (never asserted)
HOLD_S = 5 * BOUND_S  # the longest a held query waits for its release


def limits(**values: Any) -> pytest.MarkDecorator:
    """Run a test with these SQL settings."""
    return pytest.mark.parametrize("sql_limits", [values], indirect=True, ids=["limits"])


@pytest.fixture
def sql_limits(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", {}))


@pytest.fixture
def settings(db_url: str, tmp_path: Path, sql_limits: dict[str, Any]) -> Settings:
    return Settings(home=tmp_path / "home", database_url=db_url, lease_ttl_s=30, retry_base_s=0.01,
                    retry_max_s=0.05, **sql_limits)


class Blocker:
    """Holds the next ``n`` queries in their result stream until :attr:`release` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.batches: list[pa.RecordBatch] = []
        self._cond = threading.Condition()
        self._to_hold = 0
        self.held = 0
        self.left = 0  # held queries that went on (released)

    def hold(self, n: int) -> None:
        with self._cond:
            self._to_hold += n

    def wait_held(self, n: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.held >= n, timeout=BOUND_S)

    def enter(self, batch: pa.RecordBatch) -> None:
        with self._cond:
            if self._to_hold <= 0:
                return
            self._to_hold -= 1
            self.held += 1
            self.batches.append(batch)
            self._cond.notify_all()
        self.release.wait(HOLD_S)
        with self._cond:
            self.left += 1


@pytest.fixture
def blocker(monkeypatch: pytest.MonkeyPatch) -> Iterator[Blocker]:
    b = Blocker()
    original = ResultSink.write

    def write(self: Any, batch: pa.RecordBatch) -> None:
        b.enter(batch)
        original(self, batch)

    monkeypatch.setattr(ResultSink, "write", write)
    yield b
    b.release.set()


@pytest.fixture
def background() -> Iterator[Callable[..., Future[Any]]]:
    pool = ThreadPoolExecutor(64)
    yield pool.submit
    pool.shutdown(wait=True)


def query(attack: Attack, who: str, text: str, workspace: str = "alpha", **extra: Any) -> Any:
    return attack.client.post("/api/sql", headers=attack.headers(who),
                              json={"sql": text, "workspace": workspace, **extra})


@limits(sql_workers=4, sql_queue=64, sql_max_per_user=64, sql_max_per_workspace=64)
def test_sql_flood_does_not_starve_health_and_executor_calls(attack: Attack, blocker: Blocker,
                                                              background: Callable[..., Future[Any]]) -> None:
    flood = 40
    running = min(flood, getattr(attack.ctx.settings, "sql_workers", flood))  # the pool's threads are all busy
    blocker.hold(flood)
    floods = [background(query, attack, "alpha_analyst", f"SELECT {i} AS i") for i in range(flood)]
    assert blocker.wait_held(running)
    health = background(attack.client.get, "/health")
    claim = background(attack.client.post, "/ops/claim", headers=attack.headers("executor"),
                       json={"executor_id": "flooded", "capabilities": ["noop"], "wait_s": 0})
    done, _ = wait([health, claim], timeout=BOUND_S)
    still_running = blocker.left == 0 and blocker.held == running
    blocker.release.set()
    assert health in done and claim in done, "the control plane did not answer while SQL queries ran"
    assert still_running
    assert health.result().status_code == 200
    assert claim.result().status_code in (200, 204)
    assert all(f.result(timeout=BOUND_S).status_code == 200 for f in floods)  # queued, not refused


@limits(sql_max_per_user=2, sql_max_per_workspace=10)
def test_concurrent_queries_per_user_capped_with_retry_after(attack: Attack, blocker: Blocker,
                                                             background: Callable[..., Future[Any]]) -> None:
    blocker.hold(2)
    slow = [background(query, attack, "alpha_analyst", f"SELECT {i} AS i") for i in range(2)]
    assert blocker.wait_held(2)
    third = query(attack, "alpha_analyst", "SELECT 3 AS i")
    other_user = query(attack, "alpha_engineer", "SELECT 4 AS i")
    blocker.release.set()
    assert third.status_code == 429, third.text
    assert int(third.headers["Retry-After"]) >= 1
    error = third.json()["error"]
    assert error["code"] == "sql_user_busy" and error["details"]["cap"] == "sql_max_per_user"
    assert "sql_max_per_user = 2" in error["message"]
    assert other_user.status_code == 200
    assert [f.result(timeout=BOUND_S).status_code for f in slow] == [200, 200]


@limits(sql_max_per_user=10, sql_max_per_workspace=2)
def test_concurrent_queries_per_workspace_capped_with_retry_after(attack: Attack, blocker: Blocker,
                                                                  background: Callable[..., Future[Any]]) -> None:
    blocker.hold(2)
    slow = [background(query, attack, who, "SELECT 1 AS i") for who in ("alpha_analyst", "alpha_engineer")]
    assert blocker.wait_held(2)
    third = query(attack, "alpha_analyst", "SELECT 3 AS i")
    other_workspace = query(attack, "beta_analyst", "SELECT 4 AS i", workspace="beta")
    blocker.release.set()
    assert third.status_code == 429, third.text
    assert int(third.headers["Retry-After"]) >= 1
    assert third.json()["error"]["details"]["cap"] == "sql_max_per_workspace"
    assert other_workspace.status_code == 200
    assert [f.result(timeout=BOUND_S).status_code for f in slow] == [200, 200]


@limits(sql_max_timeout_s=60)
def test_sql_timeout_above_admin_max_refused(attack: Attack) -> None:
    r = query(attack, "alpha_analyst", "SELECT 1 AS i", timeout_s=3600)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "timeout_too_long"
    assert r.json()["error"]["details"]["max_timeout_s"] == 60
    assert query(attack, "alpha_analyst", "SELECT 1 AS i", timeout_s=30).status_code == 200
    assert query(attack, "alpha_analyst", "SELECT 1 AS i").status_code == 200  # default: the maximum


@limits(sql_preview_max_bytes=4096)
def test_preview_capped_in_bytes(attack: Attack) -> None:
    r = query(attack, "alpha_analyst", "SELECT repeat('x', 1000) AS s FROM range(500)", limit=500)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(r.content) < 4096 + 2048
    assert 0 < len(body["rows"]) < 5 and body["row_count"] == 500
    assert body["truncated"] is True and body["truncated_by"] == "bytes"


def test_query_cannot_read_other_queries_spill_files(attack: Attack, blocker: Blocker, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     background: Callable[..., Future[Any]]) -> None:
    monkeypatch.chdir(tmp_path)  # where a relative temp folder would be
    blocker.hold(1)
    victim = background(query, attack, "alpha_analyst", "SELECT current_setting('temp_directory') AS t")
    assert blocker.wait_held(1)
    temp = Path(blocker.batches[0].column(0)[0].as_py())
    temp = temp if temp.is_absolute() else tmp_path / temp
    temp.mkdir(parents=True, exist_ok=True)  # what DuckDB writes when the victim spills
    (temp / "duckdb_temp_storage_S32K-0.tmp").write_text("secret,n\nvictim-4711,1\n")
    read = query(attack, "beta_analyst", f"SELECT * FROM read_csv('{temp.as_posix()}/*.tmp')", workspace="beta")
    listed = query(attack, "beta_analyst", f"SELECT * FROM glob('{temp.parent.as_posix()}/**')", workspace="beta")
    blocker.release.set()
    assert victim.result(timeout=BOUND_S).status_code == 200
    for r in (read, listed):
        assert r.status_code == 422, r.text
        assert "victim-4711" not in r.text and "duckdb_temp_storage" not in r.text
    assert not temp.exists()  # the victim's private folder went with it


def _login(client: TestClient, name: str) -> None:
    from tests.web.conftest import login

    assert login(client, name, PASSWORD).status_code == 303


def test_viewer_cannot_download_result_csv_page(attack: Attack) -> None:
    made = query(attack, "alpha_analyst", "SELECT 'victim-4711' AS secret")
    assert made.status_code == 200
    qid = made.json()["query_id"]
    viewer = TestClient(attack.client.app)
    _login(viewer, "alpha_viewer")
    assert viewer.get(f"/sql?query={qid}").status_code == 200  # the history stays readable
    for fmt in ("csv", "parquet"):
        r = viewer.get(f"/sql/queries/{qid}/result.{fmt}")
        assert r.status_code == 403, r.text
        assert "victim-4711" not in r.text
    assert attack.client.get(f"/api/queries/{qid}/result", headers=attack.headers("alpha_viewer")).status_code == 403
    analyst = TestClient(attack.client.app)
    _login(analyst, "alpha_analyst")
    assert "victim-4711" in analyst.get(f"/sql/queries/{qid}/result.csv").text  # who may query still can


@limits(sql_result_retention_days=7)
def test_results_past_retention_are_deleted(attack: Attack) -> None:
    old = query(attack, "alpha_analyst", "SELECT 'old result' AS s").json()
    store = BlobStore(attack.ctx.settings.artifacts_dir)
    assert store.exists(old["result_sha256"])
    real_clock = attack.ctx.clock
    attack.ctx.clock = lambda: real_clock() + timedelta(days=8)
    new = query(attack, "alpha_analyst", "SELECT 'new result' AS s").json()
    headers = attack.headers("alpha_analyst")
    gone = attack.client.get(f"/api/queries/{old['query_id']}/result", headers=headers)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "result_expired"
    assert not store.exists(old["result_sha256"])
    row = attack.client.get(f"/api/queries/{old['query_id']}", headers=headers).json()
    assert row["result_expired"] is True and row["sql"] == "SELECT 'old result' AS s" and row["rows"] == 1
    assert row["result_sha256"] == old["result_sha256"]
    assert attack.client.get(f"/api/queries/{new['query_id']}/result", headers=headers).status_code == 200


@limits(sql_result_quota_bytes=1)
def test_results_over_workspace_quota_are_deleted_oldest_first(attack: Attack) -> None:
    ids = [query(attack, "alpha_analyst", f"SELECT {i} AS n, 'result {i}' AS s").json()["query_id"] for i in range(3)]
    other = query(attack, "beta_analyst", "SELECT 'beta keeps its own' AS s", workspace="beta").json()["query_id"]
    headers = attack.headers("alpha_analyst")
    codes = [attack.client.get(f"/api/queries/{i}/result", headers=headers).status_code for i in ids]
    assert codes == [404, 404, 200]  # the newest result is kept, the oldest went first
    assert [attack.client.get(f"/api/queries/{i}", headers=headers).json()["result_expired"] for i in ids] == [
        True, True, False]
    assert attack.client.get(f"/api/queries/{other}/result", headers=attack.headers("beta_analyst")).status_code == 200
