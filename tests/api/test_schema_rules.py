"""The wire schemas state the rules the server enforces (sha256 format, name patterns, the environment
enum, event types and levels, statuses), and the server enforces exactly what they state: a value
the schema refuses is a 422, a value it allows is accepted."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lakehouse.domain.events import EventType, ExecutorEventType, Level
from lakehouse.domain.rules import Environment
from lakehouse.domain.states import PhaseStatus, RunStatus

RUN = {"spec_slug": "rules", "git_sha": "abc", "phases": [{"name": "p0", "type": "noop"}]}


@pytest.fixture
def doc(client: TestClient) -> dict[str, Any]:
    served: dict[str, Any] = client.get("/openapi.json").json()
    return served


def prop(doc: dict[str, Any], model: str, field: str) -> dict[str, Any]:
    """A field's schema, following a ``$ref``/``anyOf`` to the one that carries the rule."""
    schemas = doc["components"]["schemas"]
    p: dict[str, Any] = schemas[model]["properties"][field]
    for alt in [p, *p.get("anyOf", [])]:
        if "$ref" in alt:
            alt = schemas[alt["$ref"].rsplit("/", 1)[1]]
        if "pattern" in alt or "enum" in alt:
            found: dict[str, Any] = alt
            return found
    return p


def test_the_document_states_the_rules(doc: dict[str, Any]) -> None:
    assert prop(doc, "ArtifactIn", "sha256")["pattern"] == "^[0-9a-f]{64}$"
    assert prop(doc, "ArtifactOut", "sha256")["pattern"] == "^[0-9a-f]{64}$"
    assert set(prop(doc, "RunRequest", "environment")["enum"]) == {e.value for e in Environment}
    assert set(prop(doc, "Claim", "environment")["enum"]) == {e.value for e in Environment}
    assert set(prop(doc, "EventIn", "type")["enum"]) == {t.value for t in ExecutorEventType}
    assert set(prop(doc, "EventIn", "level")["enum"]) == {lv.value for lv in Level}
    assert set(prop(doc, "EventOut", "type")["enum"]) == {t.value for t in EventType}
    assert set(prop(doc, "RunOut", "status")["enum"]) == {s.value for s in RunStatus}
    assert set(prop(doc, "PhaseOut", "status")["enum"]) == {s.value for s in PhaseStatus}
    assert "pattern" in prop(doc, "RunRequest", "spec_slug")
    assert "pattern" in prop(doc, "PhaseSpec", "name")
    assert "pattern" in prop(doc, "PhaseSpec", "type")
    assert "pattern" in prop(doc, "ClaimIn", "executor_id")
    assert "pattern" in prop(doc, "RunRequest", "workspace")
    upload = doc["paths"]["/ops/artifacts/{sha256}"]["put"]["parameters"][0]["schema"]
    assert upload["pattern"] == "^[0-9a-f]{64}$"
    runs = {p["name"]: p["schema"] for p in doc["paths"]["/ops/runs"]["get"]["parameters"]}
    assert any("enum" in alt or "$ref" in alt for alt in runs["status"].get("anyOf", [runs["status"]]))


def _matches(schema: dict[str, Any], value: str) -> bool:
    return re.search(schema["pattern"], value) is not None


@pytest.mark.parametrize(("field", "value"), [
    ("spec_slug", "bench-tput-unbatched"), ("spec_slug", "odoo_ingest_bronze"), ("spec_slug", "a.b:c"),
    ("spec_slug", "-leading"), ("spec_slug", "has space"), ("spec_slug", "sl/ash"), ("spec_slug", "ünï"),
    ("workspace", "default"), ("workspace", "Team"), ("workspace", "team_a-1"),
])
def test_the_server_enforces_exactly_the_run_request_patterns(client: TestClient, admin: dict[str, str],
                                                              doc: dict[str, Any], field: str, value: str) -> None:
    allowed = _matches(prop(doc, "RunRequest", field), value)
    r = client.post("/ops/runs", json={**RUN, field: value}, headers=admin)
    if allowed:
        # a workspace that matches the pattern may still not exist: that is a 404, never a 422
        assert r.status_code in ((201,) if field == "spec_slug" else (201, 404)), r.text
    else:
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", r.text


@pytest.mark.parametrize("name", ["ingest", "p.1:a-b_c", "x" * 200, "_no", "a b", "x" * 201])
def test_phase_names_follow_their_pattern(client: TestClient, admin: dict[str, str], doc: dict[str, Any],
                                          name: str) -> None:
    allowed = _matches(prop(doc, "PhaseSpec", "name"), name) and len(name) <= 200
    r = client.post("/ops/runs", json={**RUN, "phases": [{"name": name, "type": "noop"}]}, headers=admin)
    assert r.status_code == (201 if allowed else 422), r.text


@pytest.mark.parametrize(("executor_id", "ok"), [
    ("host-4242", True), ("spark-driver-1", True), ("w@node.example:1/x+y", True),
    ("", False), ("-x", False), ("has space", False), ("e\x00x", False),
])
def test_executor_ids_follow_their_pattern(client: TestClient, executor: dict[str, str], doc: dict[str, Any],
                                           executor_id: str, ok: bool) -> None:
    assert (executor_id != "" and _matches(prop(doc, "ClaimIn", "executor_id"), executor_id)) == ok
    r = client.post("/ops/claim", json={"executor_id": executor_id, "capabilities": ["noop"]}, headers=executor)
    assert r.status_code == (204 if ok else 422), r.text


def test_environment_and_status_filters_are_enums(client: TestClient, admin: dict[str, str]) -> None:
    assert client.post("/ops/runs", json={**RUN, "environment": "stage"}, headers=admin).status_code == 201
    r = client.get("/ops/runs", params={"environment": "stage", "status": "queued"}, headers=admin)
    assert r.status_code == 200 and [x["environment"] for x in r.json()["runs"]] == ["stage"]
    for params in ({"environment": "qa"}, {"status": "retrying"}, {"status": "QUEUED"}):
        assert client.get("/ops/runs", params=params, headers=admin).status_code == 422, params


def test_sha256_rule_has_its_own_code(client: TestClient, executor: dict[str, str]) -> None:
    data = b"bytes"
    good = hashlib.sha256(data).hexdigest()
    assert client.put(f"/ops/artifacts/{good}", content=data, headers=executor).status_code == 200
    for bad in (good.upper(), good[:-1], good + "0", "g" * 64):
        r = client.put(f"/ops/artifacts/{bad}", content=data, headers=executor)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_sha256", (bad, r.text)
        r = client.get(f"/ops/artifacts/{bad}", headers=executor)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_sha256", (bad, r.text)


def test_event_types_and_levels_are_enums_with_their_codes(client: TestClient, admin: dict[str, str],
                                                           executor: dict[str, str]) -> None:
    assert client.post("/ops/runs", json=RUN, headers=admin).status_code == 201
    claim = client.post("/ops/claim", json={"executor_id": "w1", "capabilities": ["noop"]}, headers=executor).json()
    url = f"/ops/runs/{claim['run_id']}/events"
    base = {"event_id": "e1", "ts": "2026-12-03T09:00:00Z", "lease_token": claim["lease_token"]}

    def post(**ev: Any) -> Any:
        body = {"events": [{k: v for k, v in {**base, **ev}.items() if k != "lease_token"}],
                "lease_token": claim["lease_token"]}
        return client.post(url, json=body, headers=executor)

    for i, t in enumerate(ExecutorEventType):
        r = post(type=t.value, event_id=f"ok{i}", level="debug")
        assert r.status_code == 200, r.text
    for bad, code in (("RUN_SUCCEEDED", "invalid_event_type"), ("NOT_A_TYPE", "invalid_event_type")):
        r = post(type=bad)
        assert r.status_code == 422 and r.json()["error"]["code"] == code, r.text
    r = post(type="PHASE_LOG", level="loud")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_level", r.text
    events = client.get(url, headers=admin).json()["events"]
    assert {e["type"] for e in events} <= {t.value for t in EventType}
