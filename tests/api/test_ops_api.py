"""The executor contract over HTTP: happy paths and every documented bad path.

Each bad request must get its documented status and error code and change nothing already stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lakehouse.services import auth
from lakehouse.services.context import Context

RUN = {"spec_slug": "demo", "git_sha": "deadbeef", "input_manifest": {"source": "odoo"},
       "phases": [{"name": "ingest", "type": "noop"}, {"name": "publish", "type": "noop"}]}


def err(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert "Traceback" not in r.text
    error: dict[str, Any] = body["error"]
    return error


@pytest.fixture
def run_id(client: TestClient, admin: dict[str, str]) -> str:
    r = client.post("/ops/runs", json=RUN, headers=admin)
    assert r.status_code == 201
    return str(r.json()["run_id"])


def snapshot(client: TestClient, admin: dict[str, str], run_id: str) -> tuple[Any, Any]:
    return (client.get(f"/ops/runs/{run_id}", headers=admin).json(),
            client.get(f"/ops/runs/{run_id}/events", headers=admin).json())


def test_health_is_open(client: TestClient) -> None:
    assert client.get("/health").json()["status"] == "ok"


def test_run_lifecycle_over_http(client: TestClient, admin: dict[str, str], executor: dict[str, str],
                                 run_id: str) -> None:
    c = client.post("/ops/claim", json={"executor_id": "w1", "capabilities": ["noop"]}, headers=executor).json()
    assert c["run_id"] == run_id and c["phase"] == "ingest" and c["input_manifest"] == {"source": "odoo"}
    ev = {"event_id": "log-1", "type": "PHASE_LOG", "ts": "2026-11-22T09:00:00Z", "message": "rows: 10",
          "payload": {"rows": 10}}
    hb = client.post(f"/ops/runs/{run_id}/heartbeat", json={"lease_token": c["lease_token"], "events": [ev]},
                     headers=executor)
    assert hb.status_code == 200
    r = client.post(f"/ops/runs/{run_id}/complete", headers=executor, json={
        "lease_token": c["lease_token"], "output_manifest": {"outputs": {"bronze.x": {"rows": 10}}},
        "events": [ev], "claim_next": {"executor_id": "w1", "capabilities": ["noop"]}})
    nxt = r.json()["next"][0]
    assert nxt["phase"] == "publish"
    r = client.post(f"/ops/runs/{run_id}/complete", headers=executor,
                    json={"lease_token": nxt["lease_token"], "output_manifest": {}})
    assert r.json()["run_status"] == "succeeded"
    events = client.get(f"/ops/runs/{run_id}/events", headers=admin).json()["events"]
    assert [e["type"] for e in events].count("PHASE_LOG") == 1  # the repeated event_id was ignored
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    after = client.get(f"/ops/runs/{run_id}/events?after=3", headers=admin).json()["events"]
    assert after[0]["seq"] == 4
    run = client.get(f"/ops/runs/{run_id}", headers=admin).json()
    assert run["status"] == "succeeded" and run["git_sha"] == "deadbeef" and run["spec_slug"] == "demo"


def test_sse_stream_replays_a_finished_run(client: TestClient, admin: dict[str, str], executor: dict[str, str],
                                           run_id: str) -> None:
    client.post(f"/ops/runs/{run_id}/cancel", headers=admin)
    with client.stream("GET", f"/ops/runs/{run_id}/events/stream", headers=admin) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    assert "event: RUN_CREATED" in text and "event: RUN_CANCELLED" in text and text.rstrip().endswith("data: {}")
    with client.stream("GET", f"/ops/runs/{run_id}/events/stream", headers={**admin, "Last-Event-ID": "1"}) as r:
        text = "".join(r.iter_text())
    assert "event: RUN_CREATED" not in text and "event: RUN_CANCELLED" in text


def test_idempotent_create_answers_200(client: TestClient, admin: dict[str, str]) -> None:
    body = {**RUN, "idempotency_key": "nightly-2026-11-22"}
    a = client.post("/ops/runs", json=body, headers=admin)
    b = client.post("/ops/runs", json=body, headers=admin)
    assert (a.status_code, b.status_code) == (201, 200)
    assert a.json()["run_id"] == b.json()["run_id"]


def test_claim_with_no_work_is_204(client: TestClient, executor: dict[str, str]) -> None:
    r = client.post("/ops/claim", json={"executor_id": "w1", "capabilities": ["noop"], "wait_s": 0.2},
                    headers=executor)
    assert r.status_code == 204 and r.content == b""


def test_batched_claim_answers_a_list(client: TestClient, admin: dict[str, str], executor: dict[str, str]) -> None:
    for _ in range(3):
        client.post("/ops/runs", json=RUN, headers=admin)
    r = client.post("/ops/claim", json={"executor_id": "w1", "capabilities": ["noop"], "max_phases": 5},
                    headers=executor)
    assert len(r.json()["claims"]) == 3


# --- bad input --------------------------------------------------------------------------------

def test_malformed_json(client: TestClient, admin: dict[str, str]) -> None:
    r = client.post("/ops/runs", content=b'{"spec_slug": ', headers={**admin, "content-type": "application/json"})
    err(r, 400, "malformed_json")


@pytest.mark.parametrize("body", [
    {**RUN, "surprise": 1},  # unknown field
    {**RUN, "phases": "ingest"},  # wrong type
    {**RUN, "phases": []},  # no phases
    {**RUN, "phases": [{"name": "a", "type": "noop"}, {"name": "a", "type": "noop"}]},  # duplicate names
    {**RUN, "phases": [{"name": "a", "type": "noop", "max_attempts": 0}]},
    {**RUN, "environment": "qa"},
    {k: v for k, v in RUN.items() if k != "git_sha"},  # missing field
])
def test_invalid_run_bodies(client: TestClient, admin: dict[str, str], body: dict[str, Any]) -> None:
    e = err(client.post("/ops/runs", json=body, headers=admin), 422, "validation_error")
    assert e["message"] and e["details"]
    assert client.get("/ops/runs", headers=admin).json()["runs"] == []


def test_oversized_body(client: TestClient, admin: dict[str, str], ctx: Context) -> None:
    big = {**RUN, "input_manifest": {"blob": "x" * (ctx.settings.max_body_bytes + 10)}}
    err(client.post("/ops/runs", json=big, headers=admin), 413, "too_large")
    assert client.get("/ops/runs", headers=admin).json()["runs"] == []


def test_oversized_body_without_content_length(client: TestClient, admin: dict[str, str], ctx: Context) -> None:
    def gen() -> Iterator[bytes]:
        yield b'{"spec_slug": "'
        yield b"x" * (ctx.settings.max_body_bytes + 10)
        yield b'"}'

    r = client.post("/ops/runs", content=gen(), headers={**admin, "content-type": "application/json"})
    err(r, 413, "too_large")


def test_unknown_run_ids(client: TestClient, admin: dict[str, str], executor: dict[str, str]) -> None:
    err(client.get("/ops/runs/nope", headers=admin), 404, "run_not_found")
    err(client.get("/ops/runs/nope/events", headers=admin), 404, "run_not_found")
    err(client.post("/ops/runs/nope/cancel", headers=admin), 404, "run_not_found")
    err(client.post("/ops/runs/nope/heartbeat", json={"lease_token": "t"}, headers=executor), 404, "run_not_found")
    err(client.post("/ops/runs/nope/claim", json={"executor_id": "w", "capabilities": ["noop"]}, headers=executor),
        404, "run_not_found")


def test_wrong_expired_and_foreign_lease_tokens(client: TestClient, admin: dict[str, str],
                                                executor: dict[str, str], run_id: str) -> None:
    other = client.post("/ops/runs", json=RUN, headers=admin).json()["run_id"]
    c1 = client.post(f"/ops/runs/{run_id}/claim", json={"executor_id": "w1", "capabilities": ["noop"]},
                     headers=executor).json()
    c2 = client.post(f"/ops/runs/{other}/claim", json={"executor_id": "w2", "capabilities": ["noop"]},
                     headers=executor).json()
    before = snapshot(client, admin, run_id)
    for token in ("wrong", c2["lease_token"]):  # a made-up token, and a real token of another run
        err(client.post(f"/ops/runs/{run_id}/heartbeat", json={"lease_token": token}, headers=executor),
            409, "lease_lost")
        err(client.post(f"/ops/runs/{run_id}/complete", json={"lease_token": token}, headers=executor),
            409, "lease_lost")
        err(client.post(f"/ops/runs/{run_id}/fail", json={"lease_token": token, "error": "x"}, headers=executor),
            409, "lease_lost")
    assert snapshot(client, admin, run_id) == before
    client.post(f"/ops/runs/{run_id}/cancel", headers=admin)
    err(client.post(f"/ops/runs/{run_id}/complete", json={"lease_token": c1["lease_token"]}, headers=executor),
        409, "lease_lost")


def test_missing_and_wrong_bearer_tokens(client: TestClient, run_id: str) -> None:
    err(client.get(f"/ops/runs/{run_id}"), 401, "missing_token")
    r = client.get(f"/ops/runs/{run_id}", headers={"Authorization": "Bearer lh_not-a-token"})
    err(r, 401, "invalid_token")
    assert r.headers["www-authenticate"] == "Bearer"
    err(client.get(f"/ops/runs/{run_id}", headers={"Authorization": "Basic abc"}), 401, "invalid_token")
    err(client.post("/ops/runs", json=RUN), 401, "missing_token")


def test_revoked_token(client: TestClient, ctx: Context) -> None:
    auth.create_user(ctx, "temp", "engineer", None)
    token = auth.create_token(ctx, "temp")
    auth.revoke_tokens(ctx, "temp")
    err(client.get("/ops/runs", headers={"Authorization": f"Bearer {token}"}), 401, "invalid_token")


def test_executor_token_cannot_use_admin_calls(client: TestClient, executor: dict[str, str], run_id: str) -> None:
    err(client.post("/ops/runs", json=RUN, headers=executor), 403, "forbidden")
    err(client.post(f"/ops/runs/{run_id}/cancel", headers=executor), 403, "forbidden")


def test_viewer_reads_but_cannot_write(client: TestClient, ctx: Context, run_id: str) -> None:
    auth.create_user(ctx, "vic", "viewer", None)
    viewer = {"Authorization": f"Bearer {auth.create_token(ctx, 'vic')}"}
    assert client.get(f"/ops/runs/{run_id}", headers=viewer).status_code == 200
    err(client.post("/ops/runs", json=RUN, headers=viewer), 403, "forbidden")
    err(client.post("/ops/claim", json={"executor_id": "v", "capabilities": ["noop"]}, headers=viewer),
        403, "forbidden")


def test_executors_cannot_post_state_events(client: TestClient, executor: dict[str, str], run_id: str) -> None:
    ev = {"event_id": "x", "type": "RUN_SUCCEEDED", "ts": "2026-11-22T09:00:00Z"}
    err(client.post(f"/ops/runs/{run_id}/events", json={"events": [ev]}, headers=executor), 422,
        "invalid_event_type")


def test_artifact_upload_and_bad_hash(client: TestClient, admin: dict[str, str], executor: dict[str, str],
                                      run_id: str, ctx: Context) -> None:
    data = b"parquet bytes"
    sha = hashlib.sha256(data).hexdigest()
    wrong = hashlib.sha256(b"something else").hexdigest()
    e = err(client.put(f"/ops/artifacts/{wrong}", content=data, headers=executor), 422, "sha256_mismatch")
    assert e["details"]["actual"] == sha
    assert not list(ctx.settings.artifacts_dir.rglob(wrong))
    err(client.put("/ops/artifacts/not-a-sha", content=data, headers=executor), 422, "invalid_sha256")
    meta = {"run_id": run_id, "phase": "ingest", "name": "rows.parquet", "sha256": sha, "size_bytes": len(data),
            "media_type": "application/vnd.apache.parquet", "metadata": {"rows": 3}}
    err(client.post("/ops/artifacts", json=meta, headers=executor), 409, "content_missing")
    assert client.put(f"/ops/artifacts/{sha}", content=data, headers=executor).status_code == 200
    assert client.post("/ops/artifacts", json=meta, headers=executor).status_code == 201
    assert client.post("/ops/artifacts", json=meta, headers=executor).status_code == 200
    err(client.post("/ops/artifacts", json={**meta, "size_bytes": 1}, headers=executor), 422, "size_mismatch")
    err(client.post("/ops/artifacts", json={**meta, "phase": "nope"}, headers=executor), 404, "phase_not_found")
    err(client.post("/ops/artifacts", json={**meta, "run_id": "nope"}, headers=executor), 404, "run_not_found")
    other = hashlib.sha256(b"v2").hexdigest()
    client.put(f"/ops/artifacts/{other}", content=b"v2", headers=executor)
    err(client.post("/ops/artifacts", json={**meta, "sha256": other, "size_bytes": 2}, headers=executor), 409,
        "artifact_immutable")
    got = client.get(f"/ops/artifacts/{sha}", headers=admin)
    assert got.content == data
    listed = client.get(f"/ops/runs/{run_id}/artifacts", headers=admin).json()["artifacts"]
    assert [(a["name"], a["sha256"]) for a in listed] == [("rows.parquet", sha)]


def test_executors_listing(client: TestClient, admin: dict[str, str], executor: dict[str, str]) -> None:
    client.post("/ops/claim", json={"executor_id": "spark-driver-1", "capabilities": ["spark"]}, headers=executor)
    ex = client.get("/ops/executors", headers=admin).json()["executors"]
    assert ex[0]["executor_id"] == "spark-driver-1" and ex[0]["capabilities"] == ["spark"]


def test_unknown_route_uses_the_error_shape(client: TestClient, admin: dict[str, str]) -> None:
    err(client.get("/ops/nothing-here", headers=admin), 404, "not_found")
    err(client.delete("/ops/runs", headers=admin), 405, "method_not_allowed")
