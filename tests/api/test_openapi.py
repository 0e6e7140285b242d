"""The committed OpenAPI document must equal what the server serves at /openapi.json."""

from __future__ import annotations

from pathlib import Path

import yaml
from fastapi.testclient import TestClient

CONTRACT = Path(__file__).parents[2] / "contracts" / "lakehouse-executor.openapi.yaml"


def test_committed_contract_matches_the_served_document(client: TestClient) -> None:
    served = client.get("/openapi.json").json()
    committed = yaml.safe_load(CONTRACT.read_text())
    assert committed == served, "contract drifted: run `make openapi` and review the diff"


def test_contract_documents_every_executor_endpoint() -> None:
    paths = yaml.safe_load(CONTRACT.read_text())["paths"]
    for path, method in [("/ops/runs", "post"), ("/ops/claim", "post"), ("/ops/runs/{run_id}/claim", "post"),
                         ("/ops/runs/{run_id}/heartbeat", "post"), ("/ops/runs/{run_id}/events", "post"),
                         ("/ops/artifacts", "post"), ("/ops/artifacts/{sha256}", "put"),
                         ("/ops/runs/{run_id}/complete", "post"), ("/ops/runs/{run_id}/fail", "post"),
                         ("/ops/runs/{run_id}/cancel", "post"), ("/ops/runs/{run_id}", "get"),
                         ("/ops/runs/{run_id}/events", "get"), ("/ops/runs/{run_id}/events/stream", "get")]:
        assert method in paths[path], f"{method.upper()} {path} missing from the contract"
