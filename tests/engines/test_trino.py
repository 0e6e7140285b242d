"""The ``trino`` phase type against a stand-in Trino.

No Trino server can run on this machine (no distribution is reachable), so these tests run the real
``trino`` Python client against a small HTTP server on 127.0.0.1 that speaks the part of Trino's
client protocol the client uses: ``POST /v1/statement`` (the SQL in the body, the user in
``X-Trino-User``) answers a query id and a ``nextUri``; ``GET nextUri`` pages through columns and data
with ``stats`` (state, progress) until a page has no ``nextUri``; ``DELETE nextUri`` cancels the
query. ``EXPLAIN (TYPE IO, FORMAT JSON)`` answers a canned estimate. What a real Trino would add
(planning, access control, the Iceberg connector) is not exercised here.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

pytest.importorskip("trino")

from lakehouse.handlers import trino as handler
from lakehouse.settings import Settings
from lakehouse.worker.context import PhaseCancelled, PhaseContext, PhaseError
from tests.http_support import JsonHandler, serving

COLUMNS = [
    {"name": "month", "type": "varchar", "typeSignature": {"rawType": "varchar", "arguments": [
        {"kind": "LONG", "value": 2147483647}]}},
    {"name": "amount", "type": "double", "typeSignature": {"rawType": "double", "arguments": []}},
    {"name": "n", "type": "bigint", "typeSignature": {"rawType": "bigint", "arguments": []}},
]


@dataclass
class StandIn:
    """What the stand-in saw and how it answers."""

    rows: int = 25
    page: int = 10
    estimate_bytes: float | str = 5000.0
    endless: bool = False  # the query keeps running (no data) until cancelled
    statements: list[tuple[str, str]] = field(default_factory=list)  # (user, sql)
    deleted: list[str] = field(default_factory=list)
    polls: int = 0
    url: str = ""
    _queries: dict[str, str] = field(default_factory=dict)


def _explain(bytes_: float | str) -> str:
    return json.dumps({"inputTableColumnInfos": [{
        "table": {"catalog": "iceberg", "schemaTable": {"schema": "gold_dev", "table": "revenue"}},
        "columnConstraints": [],
        "estimate": {"outputRowCount": 25.0, "outputSizeInBytes": bytes_, "cpuCost": 0.0, "maxMemory": 0.0,
                     "networkCost": 0.0}}],
        "estimate": {"outputRowCount": 25.0, "outputSizeInBytes": bytes_, "cpuCost": 0.0, "maxMemory": 0.0,
                     "networkCost": 0.0}})


@pytest.fixture
def standin() -> Iterator[StandIn]:
    state = StandIn()

    class Handler(JsonHandler):
        def do_POST(self) -> None:
            sql = self.rfile.read(int(self.headers["Content-Length"])).decode()
            state.statements.append((self.headers.get("X-Trino-User", ""), sql))
            qid = f"q{len(state.statements)}"
            state._queries[qid] = sql
            self.send_json({"id": qid, "infoUri": f"{state.url}/ui/{qid}",
                            "nextUri": f"{state.url}/v1/statement/{qid}/0",
                            "stats": {"state": "QUEUED", "queued": True, "scheduled": False}})

        def do_GET(self) -> None:
            _, _, _, qid, token = self.path.split("/")
            n = int(token)
            state.polls += 1
            sql = state._queries[qid]
            base = {"id": qid, "infoUri": f"{state.url}/ui/{qid}"}
            if qid in state.deleted:
                self.send_json({**base, "stats": {"state": "FAILED"}, "error": {
                    "message": "Query was canceled", "errorCode": 3, "errorName": "USER_CANCELED",
                    "errorType": "USER_ERROR"}})
                return
            if sql.startswith("EXPLAIN"):
                self.send_json({**base, "columns": [{"name": "Query Plan", "type": "varchar", "typeSignature": {
                    "rawType": "varchar", "arguments": [{"kind": "LONG", "value": 2147483647}]}}],
                    "data": [[_explain(state.estimate_bytes)]], "stats": {"state": "FINISHED"}})
                return
            if state.endless:
                time.sleep(0.02)
                self.send_json({**base, "nextUri": f"{state.url}/v1/statement/{qid}/{n + 1}",
                            "stats": {"state": "RUNNING", "progressPercentage": 1.0}})
                return
            start = n * state.page
            data = [[f"2026-{(i % 12) + 1:02d}", i * 1.5, i] for i in range(start, min(start + state.page, state.rows))]
            more = start + state.page < state.rows
            doc: dict[str, Any] = {**base, "columns": COLUMNS, "data": data, "stats": {
                "state": "RUNNING" if more else "FINISHED",
                "progressPercentage": 100.0 * min(start + state.page, state.rows) / state.rows}}
            if more:
                doc["nextUri"] = f"{state.url}/v1/statement/{qid}/{n + 1}"
            self.send_json(doc)

        def do_DELETE(self) -> None:
            state.deleted.append(self.path.split("/")[3])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        state.url = url
        yield state


class FakeClient:
    """The executor contract's two calls a trino phase makes: its connection, and the artifact upload."""

    def __init__(self, port: int, read_only_user: str | None = "analyst_ro") -> None:
        self.config = {"host": "127.0.0.1", "port": port, "user": "lakehouse", "catalog": "iceberg"}
        if read_only_user:
            self.config["read_only_user"] = read_only_user
        self.uploads: list[dict[str, Any]] = []

    def lease_connection(self, run_id: str, lease_token: str, name: str) -> dict[str, Any]:
        return {"name": name, "type": "trino", "config": self.config, "secrets": {}}

    def upload_artifact(self, run_id: str, phase: str, name: str, path: Path, media_type: str,
                        metadata: dict[str, Any] | None) -> dict[str, Any]:
        art = {"name": name, "media_type": media_type, "metadata": metadata, "table": pq.read_table(path)}
        self.uploads.append(art)
        return {"name": name}


def _ctx(standin: StandIn, tmp_path: Path, cap: int = 0, **params: Any) -> tuple[PhaseContext, FakeClient]:
    port = int(standin.url.rsplit(":", 1)[1])
    client = FakeClient(port)
    ctx = PhaseContext(run_id="r1", phase="report", phase_type="trino", attempt=1,
                       params={"sql": "SELECT month, amount, n FROM iceberg.gold_dev.revenue", "connection": "trino",
                               "page_rows": 10, "preview_rows": 5, **params},
                       input_manifest={"connections": ["trino"]}, previous_outputs={}, environment="dev",
                       spec_slug="report", git_sha="abc1234",
                       settings=Settings(home=tmp_path, trino_max_scan_bytes=cap), client=client,  # type: ignore[arg-type]
                       lease_token="lease", workdir_path=tmp_path / "work")
    (tmp_path / "work").mkdir(parents=True)
    return ctx, client


def test_pages_the_result_into_a_parquet_artifact_with_progress(standin: StandIn, tmp_path: Path) -> None:
    ctx, client = _ctx(standin, tmp_path)
    progress: list[dict[str, Any]] = []
    real = ctx.progress

    def record(message: str, fraction: float | None = None, **extra: Any) -> None:
        progress.append({"fraction": fraction, **extra})
        real(message, fraction, **extra)

    ctx.progress = record  # type: ignore[method-assign]
    manifest = handler.run_trino(ctx)
    # the estimate was asked first, then the query, both as the read-only user
    assert [s for _, s in standin.statements] == [
        "EXPLAIN (TYPE IO, FORMAT JSON) SELECT month, amount, n FROM iceberg.gold_dev.revenue",
        "SELECT month, amount, n FROM iceberg.gold_dev.revenue"]
    assert {u for u, _ in standin.statements} == {"analyst_ro"}
    q = manifest["query"]
    assert q["rows"] == 25 and q["trino_query_id"] == "q2" and q["user"] == "analyst_ro"
    assert q["estimate"]["bytes"] == 5000.0 and q["estimate"]["tables"][0]["table"] == "iceberg.gold_dev.revenue"
    assert manifest["lineage"] == {"inputs": ["gold.revenue"], "outputs": []}
    [art] = client.uploads
    table = art["table"]
    assert table.num_rows == 25 and table.column_names == ["month", "amount", "n"]
    assert table.column("n").to_pylist() == list(range(25))
    assert art["media_type"] == handler.PARQUET and len(art["metadata"]["preview"]) == 5
    # progress after every page of the client's fetches, ending at 100 %
    assert [p["rows"] for p in progress] == sorted(p["rows"] for p in progress) and progress[-1]["rows"] == 25
    assert progress[-1]["fraction"] == 1.0
    events, _ = ctx.drain()
    estimate = next(e for e in events if e["message"].startswith("cost estimate"))
    assert estimate["payload"]["estimate"]["bytes"] == 5000.0
    assert events.index(estimate) == 0, "the estimate is recorded before the query runs"


def test_a_query_over_the_cost_cap_is_refused_before_running(standin: StandIn, tmp_path: Path) -> None:
    standin.estimate_bytes = 10 * 1024 ** 3
    ctx, client = _ctx(standin, tmp_path, cap=1024 ** 3)
    with pytest.raises(PhaseError, match=r"over the cap of 1\.0 GB") as exc:
        handler.run_trino(ctx)
    assert exc.value.retryable is False
    assert [s for _, s in standin.statements] == [
        "EXPLAIN (TYPE IO, FORMAT JSON) SELECT month, amount, n FROM iceberg.gold_dev.revenue"]
    assert client.uploads == []
    events, _ = ctx.drain()
    assert events[0]["payload"]["cap_bytes"] == 1024 ** 3  # the estimate is in the trail even when refused
    # a phase can lower the cap, never raise it
    standin.estimate_bytes = 5000.0
    ctx, _ = _ctx(standin, tmp_path / "b", cap=1024 ** 3, max_scan_bytes=10 * 1024 ** 3)
    assert handler._cap(ctx) == 1024 ** 3
    ctx, _ = _ctx(standin, tmp_path / "c", cap=1024 ** 3, max_scan_bytes=1000)
    with pytest.raises(PhaseError, match="over the cap"):
        handler.run_trino(ctx)


def test_an_unknown_estimate_under_a_cap_is_refused_unless_allowed(standin: StandIn, tmp_path: Path) -> None:
    standin.estimate_bytes = "NaN"
    ctx, _ = _ctx(standin, tmp_path, cap=1024)
    with pytest.raises(PhaseError, match="cannot estimate"):
        handler.run_trino(ctx)
    ctx, _ = _ctx(standin, tmp_path / "b", cap=1024, allow_unknown_cost=True)
    assert handler.run_trino(ctx)["query"]["rows"] == 25


def test_cancel_kills_the_trino_query(standin: StandIn, tmp_path: Path) -> None:
    standin.endless = True
    ctx, client = _ctx(standin, tmp_path)
    def cancel() -> None:
        ctx.cancel_reason = "run cancelled"
        ctx.cancelled.set()

    threading.Timer(0.3, cancel).start()
    with pytest.raises(PhaseCancelled):
        handler.run_trino(ctx)
    assert set(standin.deleted) == {"q2"}, "the running query got a DELETE on its nextUri"
    assert client.uploads == []


def test_writes_are_refused_before_reaching_trino(standin: StandIn, tmp_path: Path) -> None:
    for sql in ("DELETE FROM iceberg.gold_dev.revenue", "SELECT 1; DROP TABLE x",
                "CREATE TABLE iceberg.gold_dev.x AS SELECT 1"):
        ctx, _ = _ctx(standin, tmp_path / str(len(standin.statements)) / sql[:3], sql=sql)
        with pytest.raises(PhaseError, match="sql_not_allowed"):
            handler.run_trino(ctx)
    assert standin.statements == []


def test_trino_errors_and_unreachable_trino(standin: StandIn, tmp_path: Path) -> None:
    ctx, client = _ctx(standin, tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        client.config["port"] = s.getsockname()[1]
    with pytest.raises(PhaseError, match="cannot reach Trino") as exc:
        handler.run_trino(ctx)
    assert exc.value.retryable is True
    ctx, client = _ctx(standin, tmp_path / "b")
    client.config.pop("read_only_user")
    handler.run_trino(ctx)
    assert standin.statements[-1][0] == "lakehouse"  # no read-only user configured: the connection's user


def test_cost_estimate_and_names() -> None:
    est = handler.cost_estimate(_explain(1234.0))
    assert est == {"bytes": 1234.0, "rows": 25.0, "tables": [
        {"table": "iceberg.gold_dev.revenue", "rows": 25.0, "bytes": 1234.0}]}
    assert handler.cost_estimate(_explain("NaN"))["bytes"] is None
    assert handler.our_table("iceberg.acme__silver_prod.orders") == "silver.orders"
    assert handler.our_table("hive.default.t") is None
