"""The artifact store on S3 (``LAKEHOUSE_ARTIFACT_STORE=s3://bucket/prefix``), through the HTTP API.

S3 cannot run here: moto's server on loopback stands in for it (tests/s3_support.py). Everything else
is real: the app, its database (SQLite and PostgreSQL), botocore speaking HTTP to moto. The executor
speaks only the contract (PUT/POST/GET /ops/artifacts...); the control plane talks to the bucket.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lakehouse.api.app import create_app
from lakehouse.lake.s3store import S3BlobStore
from lakehouse.services import artifacts
from lakehouse.services.context import open_context
from lakehouse.settings import Settings
from lakehouse.store import artifacts as artifact_rows
from tests.s3_support import KEY_ID, SECRET, keys, moto_s3, open_uploads, s3_settings
from tests.security import conftest as security
from tests.security.conftest import Attack

attack = security.attack  # the attacker fixture (two workspaces, a member of each in every role)
fast_password_hashing = security.fast_password_hashing

BUCKET = "arts"


@pytest.fixture(scope="module")
def moto() -> Iterator[tuple[str, Any]]:
    with moto_s3() as (endpoint, client):
        client.create_bucket(Bucket=BUCKET)
        yield endpoint, client


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"t-{request.node.name}".replace("[", "-").replace("]", "")


@pytest.fixture
def settings(settings: Settings, moto: tuple[str, Any], prefix: str) -> Settings:
    """The suite's settings with the artifact store on ``s3://arts/<test>``."""
    return settings.model_copy(update=s3_settings(moto[0], f"s3://{BUCKET}/{prefix}"))


def _put(attack: Attack, data: bytes, who: str = "executor") -> Any:
    return attack.client.put(f"/ops/artifacts/{hashlib.sha256(data).hexdigest()}", content=data,
                             headers=attack.headers(who))


def _register(attack: Attack, run_id: str, data: bytes, name: str = "out.json", who: str = "executor") -> Any:
    return attack.client.post("/ops/artifacts", headers=attack.headers(who), json={
        "run_id": run_id, "phase": "p", "name": name, "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data), "media_type": "application/json", "metadata": {}})


def _run(attack: Attack, workspace: str = "alpha") -> str:
    run = attack.run("admin", workspace, [{"name": "p", "type": "noop"}])
    assert run["status_code"] == 201, run
    return str(run["run_id"])


def test_upload_register_download_on_s3(attack: Attack, moto: tuple[str, Any], prefix: str) -> None:
    s3 = moto[1]
    data = b'{"rows": 3}' * 1000
    sha = hashlib.sha256(data).hexdigest()
    r = _put(attack, data)
    assert r.status_code == 200, r.text
    assert r.json() == {"sha256": sha, "size_bytes": len(data), "stored": True}
    # the content under its content address, nothing left under the temporary prefix
    assert keys(s3, BUCKET, prefix) == [f"{prefix}/{sha[:2]}/{sha[2:4]}/{sha}"]
    assert s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{sha[:2]}/{sha[2:4]}/{sha}")["Body"].read() == data
    with attack.ctx.db.read() as conn:
        blob = artifact_rows.blob(conn, sha)
    assert blob is not None and blob.uri == f"s3://{BUCKET}/{prefix}/{sha[:2]}/{sha[2:4]}/{sha}"

    run_id = _run(attack)
    reg = _register(attack, run_id, data)
    assert reg.status_code == 201, reg.text
    assert reg.json()["uri"] == blob.uri
    got = attack.client.get(f"/ops/artifacts/{sha}", headers=attack.headers("alpha_viewer"))
    assert got.status_code == 200, got.text
    assert got.content == data  # streamed by the control plane, not a redirect to the bucket
    assert got.headers["content-length"] == str(len(data))
    assert got.headers["content-type"].startswith("application/json")
    assert not (attack.ctx.settings.artifacts_dir / sha[:2]).exists()  # nothing went to the local store

    # the Control Room's preview reads the head of the same object
    login = attack.client.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    attack.client.post("/login", data={"name": "alpha_viewer", "password": security.PASSWORD, "csrf_token": login},
                       follow_redirects=False)
    preview = attack.client.get(f"/runs/{run_id}/artifacts/{sha}")
    assert preview.status_code == 200 and "{&#34;rows&#34;: 3}" in preview.text, preview.text[:500]


def test_same_content_is_stored_once_and_a_wrong_hash_stores_nothing(attack: Attack, moto: tuple[str, Any],
                                                                     prefix: str) -> None:
    s3 = moto[1]
    data = b"same bytes"
    assert _put(attack, data).status_code == 200
    first = s3.head_object(Bucket=BUCKET, Key=keys(s3, BUCKET, prefix)[0])["ETag"]
    assert _put(attack, data).status_code == 200
    assert len(keys(s3, BUCKET, prefix)) == 1
    assert s3.head_object(Bucket=BUCKET, Key=keys(s3, BUCKET, prefix)[0])["ETag"] == first
    a, b = _run(attack), _run(attack)
    assert _register(attack, a, data).status_code == 201
    assert _register(attack, b, data).status_code == 201  # two runs, one object

    lie = b"not what the hash says"
    r = attack.client.put(f"/ops/artifacts/{'0' * 64}", content=lie, headers=attack.headers("executor"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "sha256_mismatch"
    assert len(keys(s3, BUCKET, prefix)) == 1 and open_uploads(s3, BUCKET, prefix) == []
    reg = attack.client.post("/ops/artifacts", headers=attack.headers("executor"), json={
        "run_id": a, "phase": "p", "name": "lie.bin", "sha256": "0" * 64, "size_bytes": len(lie),
        "media_type": "application/octet-stream", "metadata": {}})
    assert reg.status_code == 409 and reg.json()["error"]["code"] == "content_missing"


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Multipart uploads and copies at test sizes: our part sizes down to 1 KiB, and moto's minimum part
    size (S3's is 5 MiB) down with them."""
    import moto.s3.models

    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 256)
    monkeypatch.setattr(S3BlobStore, "part_bytes", 1024)
    monkeypatch.setattr(S3BlobStore, "copy_limit_bytes", 4096)
    monkeypatch.setattr(S3BlobStore, "copy_part_bytes", 2048)


@pytest.mark.usefixtures("small_parts")
def test_a_large_upload_goes_in_parts_and_is_copied_in_parts(attack: Attack, moto: tuple[str, Any],
                                                             prefix: str) -> None:
    s3 = moto[1]
    data = bytes(range(256)) * 40  # 10 KiB: 10 upload parts, 5 copy parts
    sha = hashlib.sha256(data).hexdigest()
    assert _put(attack, data).status_code == 200
    assert keys(s3, BUCKET, prefix) == [f"{prefix}/{sha[:2]}/{sha[2:4]}/{sha}"]
    assert open_uploads(s3, BUCKET, prefix) == []
    assert _register(attack, _run(attack), data).status_code == 201
    assert attack.client.get(f"/ops/artifacts/{sha}", headers=attack.headers("alpha_viewer")).content == data

    wrong = data[:-1] + b"!"
    r = attack.client.put(f"/ops/artifacts/{sha}", content=wrong, headers=attack.headers("executor"))
    assert r.status_code == 422, r.text  # stored already: the body is still checked against the hash
    other = bytes(reversed(data))
    r = attack.client.put(f"/ops/artifacts/{hashlib.sha256(other).hexdigest()}", content=other[:-1] + b"?",
                          headers=attack.headers("executor"))
    assert r.status_code == 422, r.text  # a new upload with the wrong hash: its parts are aborted
    assert len(keys(s3, BUCKET, prefix)) == 1 and open_uploads(s3, BUCKET, prefix) == []
    assert s3.get_object(Bucket=BUCKET, Key=keys(s3, BUCKET, prefix)[0])["Body"].read() == data


def test_a_member_of_another_workspace_gets_404(attack: Attack) -> None:
    data = b'{"secret": "alpha only"}'
    sha = hashlib.sha256(data).hexdigest()
    assert _put(attack, data).status_code == 200
    assert _register(attack, _run(attack, "alpha"), data).status_code == 201
    assert attack.client.get(f"/ops/artifacts/{sha}", headers=attack.headers("alpha_viewer")).status_code == 200
    for who in ("beta_viewer", "beta_engineer", "beta_executor"):
        r = attack.client.get(f"/ops/artifacts/{sha}", headers=attack.headers(who))
        assert r.status_code == 404, (who, r.text)
        assert r.json()["error"]["code"] == "artifact_not_found" and b"alpha only" not in r.content
        assert "location" not in r.headers
    # stored content that no visible run references is a 404 too (no probing of the bucket by hash)
    stray = b"uploaded, never registered"
    assert _put(attack, stray).status_code == 200
    r = attack.client.get(f"/ops/artifacts/{hashlib.sha256(stray).hexdigest()}", headers=attack.headers("admin"))
    assert r.status_code == 404


def test_a_missing_bucket_is_a_clear_503(settings: Settings, admin_token: str, moto: tuple[str, Any]) -> None:
    ctx = open_context(settings.model_copy(update=s3_settings(moto[0], "s3://no-such-bucket/arts")))
    try:
        with TestClient(create_app(ctx, reaper=False)) as client:
            data = b"anything"
            r = client.put(f"/ops/artifacts/{hashlib.sha256(data).hexdigest()}", content=data,
                           headers={"Authorization": f"Bearer {admin_token}"})
    finally:
        ctx.db.dispose()
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "artifact_store_misconfigured"
    assert "no-such-bucket" in err["message"] and "NoSuchBucket" in err["message"]
    assert err["details"] == {"store": "s3://no-such-bucket/arts", "transient": False}
    assert "retry-after" not in r.headers
    with ctx.db.read() as conn:
        assert artifact_rows.blob(conn, hashlib.sha256(data).hexdigest()) is None


def test_refused_credentials_are_a_clear_503_without_the_secret(settings: Settings, admin_token: str,
                                                                 moto: tuple[str, Any]) -> None:
    from moto.core.authorization import enable_iam_authentication

    ctx = open_context(settings.model_copy(update={"s3_access_key_id": "AKIANOTAREALKEY00000",
                                                   "s3_secret_access_key": "wrong-secret-value"}))
    try:
        with TestClient(create_app(ctx, reaper=False)) as client, enable_iam_authentication():
            data = b"anything"
            r = client.put(f"/ops/artifacts/{hashlib.sha256(data).hexdigest()}", content=data,
                           headers={"Authorization": f"Bearer {admin_token}"})
    finally:
        ctx.db.dispose()
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "artifact_store_misconfigured"
    assert "refused our credentials" in err["message"]
    assert "wrong-secret-value" not in r.text and "AKIANOTAREALKEY00000" not in r.text and SECRET not in r.text
    assert KEY_ID not in r.text


def test_a_malformed_store_url_stops_the_app_factory(settings: Settings) -> None:
    ctx = open_context(settings.model_copy(update={"artifact_store": "gs://elsewhere/arts"}))
    try:
        with pytest.raises(ValueError, match="s3://bucket/prefix"):
            create_app(ctx, reaper=False)
    finally:
        ctx.db.dispose()


def test_a_query_result_becomes_an_s3_artifact(attack: Attack, moto: tuple[str, Any], prefix: str,
                                               tmp_path: Path) -> None:
    """``query`` phases keep their Parquet result in the local store (the SQL history serves it); as an
    artifact it is copied to the S3 store, so artifact downloads find it there."""
    local = artifacts.local_store(attack.ctx)
    data = b"PAR1 pretend parquet PAR1"
    sha = hashlib.sha256(data).hexdigest()
    local.path(sha).parent.mkdir(parents=True, exist_ok=True)
    local.path(sha).write_bytes(data)
    assert artifacts.adopt_local(attack.ctx, sha) == len(data)
    assert keys(moto[1], BUCKET, prefix) == [f"{prefix}/{sha[:2]}/{sha[2:4]}/{sha}"]
    assert local.path(sha).read_bytes() == data  # the SQL history's copy stays
