"""The fault answers are in the OpenAPI document: 503 (the database away, the artifact store failing
or misconfigured) and 507 (the artifact store full) with ``Retry-After``, 429 where a queue cap or the
SQL pool can refuse. Real answers, produced as the fault tests produce them, match what is documented."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from lakehouse.api.app import create_app
from lakehouse.services.context import open_context
from lakehouse.settings import Settings
from tests.e2e.harness import free_port

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the document is the same on both

# route -> the fault statuses it must document (every route also documents 503)
FAULTS: dict[tuple[str, str], set[int]] = {
    ("put", "/ops/artifacts/{sha256}"): {503, 507},
    ("get", "/ops/artifacts/{sha256}"): {503},
    ("post", "/ops/runs/{run_id}/query"): {429, 503, 507},
    ("post", "/ops/runs"): {429, 503},
    ("post", "/api/pipelines/{name}/runs"): {429, 503},
    ("post", "/api/jobs/{name}/runs"): {429, 503},
    ("post", "/api/jobs/runs/{run_id}/rerun"): {429, 503},
    ("post", "/api/sql"): {429, 503},
}


def documented(doc: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    answer: dict[str, Any] = doc["paths"][path][method]["responses"][str(status)]
    return answer


def check(doc: dict[str, Any], method: str, path: str, r: Any, code: str) -> None:
    """``r`` (a real answer) has the documented status, body schema and ``Retry-After`` header."""
    answer = documented(doc, method, path, r.status_code)
    schema = answer["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": doc["components"]}).validate(r.json())
    assert r.json()["error"]["code"] == code
    header = answer["headers"]["Retry-After"]["schema"]
    assert r.headers["retry-after"].isdigit()
    Draft202012Validator(header).validate(int(r.headers["retry-after"]))


@SQLITE
def test_fault_answers_are_documented_with_the_error_shape_and_retry_after(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    for (method, path), statuses in FAULTS.items():
        for status in statuses:
            answer = documented(doc, method, path, status)
            assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
            assert answer["headers"]["Retry-After"]["schema"]["type"] == "integer", (method, path, status)
    text = documented(doc, "put", "/ops/artifacts/{sha256}", 503)["description"]
    assert all(c in text for c in ("database_unavailable", "artifact_store_unavailable",
                                   "artifact_store_misconfigured"))
    assert "insufficient_storage" in documented(doc, "put", "/ops/artifacts/{sha256}", 507)["description"]
    assert "queue_cap" in documented(doc, "post", "/ops/runs", 429)["description"]
    # the database may be away whatever the route: every operation documents its 503
    missing = [(m, p) for p, ops in doc["paths"].items() for m, op in ops.items() if "503" not in op["responses"]]
    assert missing == []
    # routes that neither create runs nor run SQL do not claim a 429
    assert "429" not in doc["paths"]["/ops/claim"]["post"]["responses"]


@SQLITE
def test_a_full_store_answer_matches_the_documented_507(settings: Settings, admin_token: str) -> None:
    ctx = open_context(settings.model_copy(update={"artifact_store_max_bytes": 1000}))
    try:
        with TestClient(create_app(ctx, reaper=False)) as client:
            h = {"Authorization": f"Bearer {admin_token}"}
            doc = client.get("/openapi.json").json()
            data = b"x" * 1500
            r = client.put(f"/ops/artifacts/{hashlib.sha256(data).hexdigest()}", content=data, headers=h)
            assert r.status_code == 507, r.text
            check(doc, "put", "/ops/artifacts/{sha256}", r, "insufficient_storage")
    finally:
        ctx.db.dispose()


@pytest.fixture
def away(tmp_path: Path) -> Iterator[TestClient]:
    """The control plane over a PostgreSQL nobody listens on (no lifespan: it would wait for it)."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone"
    ctx = open_context(Settings(home=tmp_path / "home", database_url=url))
    yield TestClient(create_app(ctx, reaper=False))
    ctx.db.dispose()


def test_the_database_away_answer_matches_the_documented_503(away: TestClient) -> None:
    doc = away.get("/openapi.json").json()
    h = {"Authorization": "Bearer lh_not_checked_the_database_is_away"}
    data = b"bytes"
    r = away.put(f"/ops/artifacts/{hashlib.sha256(data).hexdigest()}", content=data, headers=h)
    assert r.status_code == 503, r.text
    check(doc, "put", "/ops/artifacts/{sha256}", r, "database_unavailable")
    r = away.get("/health")
    assert r.status_code == 503, r.text
    check(doc, "get", "/health", r, "database_unavailable")


@SQLITE
def test_an_s3_outage_answer_matches_the_documented_503(settings: Settings, admin_token: str) -> None:
    from tests.s3_support import FaultProxy, moto_s3, s3_settings

    with moto_s3() as (endpoint, s3):
        s3.create_bucket(Bucket="openapi")
        proxy = FaultProxy(endpoint)
        ctx = open_context(settings.model_copy(update=s3_settings(proxy.endpoint, "s3://openapi/errors")))
        try:
            with TestClient(create_app(ctx, reaper=False)) as client:
                doc = client.get("/openapi.json").json()
                proxy.fail(100, 503)  # every try of the S3 client
                data = b"never stored"
                r = client.put(f"/ops/artifacts/{hashlib.sha256(data).hexdigest()}", content=data,
                               headers={"Authorization": f"Bearer {admin_token}"})
                assert r.status_code == 503, r.text
                check(doc, "put", "/ops/artifacts/{sha256}", r, "artifact_store_unavailable")
        finally:
            ctx.db.dispose()
            proxy.close()
