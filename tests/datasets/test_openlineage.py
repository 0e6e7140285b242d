"""OpenLineage run events of phases that read or write tables, read back from the file transport and
from a real HTTP receiver on 127.0.0.1 (openlineage-python's transports, configured by settings)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lakehouse.services import openlineage
from lakehouse.services.context import Context
from tests.datasets.conftest import publish_manifest, publish_run

pytestmark = pytest.mark.usefixtures("catalog")


class Receiver:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.events.append({"path": self.path, **json.loads(body)})
                owner.headers.append(dict(self.headers))
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def lineage_file(ctx: Context, receiver: Receiver, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "lineage" / "events.jsonl"
    path.parent.mkdir()
    settings = ctx.settings.model_copy(update={"openlineage_file": str(path), "openlineage_url": receiver.url,
                                               "openlineage_api_key": "ol-secret", "openlineage_namespace": "acme"})
    assert openlineage.install(settings) is not None
    yield path
    openlineage.uninstall()


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_publish_and_query_phases_emit_run_events(ctx: Context, lineage_file: Path, receiver: Receiver) -> None:
    run_id = publish_run(ctx, publish_manifest({"gold.revenue": 4}, inputs=["silver.orders", "silver.lines"]),
                         spec="silver_to_gold", phases=("transform", "publish"))
    publish_run(ctx, {"outputs": {}, "lineage": {"inputs": ["gold.revenue"], "outputs": []}}, spec="report",
                phases=("query",))
    publish_run(ctx, {"outputs": {}}, spec="nothing")  # touches no table: no event
    openlineage.flush()
    events = _read(lineage_file)
    assert [e["job"]["name"] for e in events] == ["silver_to_gold.publish", "report.query"]
    pub = events[0]
    assert pub["eventType"] == "COMPLETE" and pub["job"]["namespace"] == "acme"
    assert pub["producer"] == openlineage.PRODUCER and pub["schemaURL"].startswith("https://openlineage.io/")
    assert sorted((i["namespace"], i["name"]) for i in pub["inputs"]) == [
        ("acme/default", "silver_dev.lines"), ("acme/default", "silver_dev.orders")]
    (out,) = pub["outputs"]
    assert (out["namespace"], out["name"]) == ("acme/default", "gold_dev.revenue")
    assert out["facets"]["version"]["datasetVersion"] == "1000"
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 4
    parent = pub["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == openlineage.run_uuid(run_id) and parent["job"]["name"] == "silver_to_gold"
    assert pub["run"]["runId"] == openlineage.run_uuid(run_id, "publish", 1)
    assert events[1]["inputs"][0]["name"] == "gold_dev.revenue" and events[1]["outputs"] == []
    # the same events reached the HTTP receiver, with the bearer token, at the endpoint
    assert [e["job"]["name"] for e in receiver.events] == ["silver_to_gold.publish", "report.query"]
    assert {e["path"] for e in receiver.events} == {"/api/v1/lineage"}
    assert all(h.get("Authorization") == "Bearer ol-secret" for h in receiver.headers)
    assert receiver.events[0]["run"]["runId"] == pub["run"]["runId"]


def test_a_receiver_that_is_down_never_fails_a_phase(ctx: Context, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    path = tmp_path / "events.jsonl"
    openlineage.install(ctx.settings.model_copy(update={"openlineage_url": dead, "openlineage_file": str(path)}))
    try:
        publish_run(ctx, publish_manifest({"gold.revenue": 1}))
        openlineage.flush()
    finally:
        openlineage.uninstall()
    assert len(_read(path)) == 1  # the file transport still got it


def test_nothing_is_sent_without_a_transport(ctx: Context) -> None:
    assert openlineage.install(ctx.settings) is None
    publish_run(ctx, publish_manifest({"gold.revenue": 1}))
    openlineage.flush()


def test_tables_of_a_manifest() -> None:
    reads, writes = openlineage.tables_of({
        "outputs": {"gold.a": {"snapshot_id": 1, "rows": 2}, "silver.staged": {"rows": 3}},
        "edges": [{"inputs": ["silver.x"], "outputs": ["silver.staged"]}],
        "lineage": {"inputs": ["bronze.y", "odoo.account_move"], "outputs": ["gold.b"]}})
    assert reads == ["bronze.y", "silver.x"]
    assert list(writes) == ["gold.a", "gold.b"] and writes["gold.a"]["rows"] == 2
