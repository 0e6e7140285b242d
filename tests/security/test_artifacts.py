"""Artifact names and media types: what an executor registers ends up in response headers."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
from urllib.parse import quote

from lakehouse.lake.blobstore import BlobStore
from tests.security.conftest import Attack

if TYPE_CHECKING:
    from httpx2 import Response  # what starlette's TestClient answers with

BODY = b'{"ok": true}'
SHA = hashlib.sha256(BODY).hexdigest()


def _run_with_content(attack: Attack) -> str:
    run = attack.run("admin", "alpha", [{"name": "p", "type": "noop"}])
    assert run["status_code"] == 201, run
    r = attack.client.put(f"/ops/artifacts/{SHA}", content=BODY, headers=attack.headers("executor"))
    assert r.status_code == 200, r.text
    return str(run["run_id"])


def _register(attack: Attack, run_id: str, name: str, media_type: str = "application/json") -> Response:
    return attack.client.post("/ops/artifacts", headers=attack.headers("executor"), json={
        "run_id": run_id, "phase": "p", "name": name, "sha256": SHA, "size_bytes": len(BODY),
        "media_type": media_type, "metadata": {}})


def _download(attack: Attack) -> Response:
    return attack.client.get(f"/ops/artifacts/{SHA}", headers=attack.headers("alpha_viewer"))


def test_non_ascii_artifact_name_breaks_every_download_of_its_content(attack: Attack) -> None:
    run_id = _run_with_content(attack)
    name = "отчёт 📊.json"
    assert _register(attack, run_id, name).status_code == 201
    r = _download(attack)
    assert r.status_code == 200, r.text
    assert r.content == BODY
    cd = r.headers["content-disposition"]
    assert cd.startswith("attachment; filename=\"")
    assert f"filename*=UTF-8''{quote(name, safe='')}" in cd
    assert cd.isascii()


def test_accented_artifact_name_downloads_with_rfc6266_filename(attack: Attack) -> None:
    run_id = _run_with_content(attack)
    assert _register(attack, run_id, "résumé.json").status_code == 201
    r = _download(attack)
    assert r.status_code == 200
    assert r.headers["content-disposition"] == \
        "attachment; filename=\"resume.json\"; filename*=UTF-8''r%C3%A9sum%C3%A9.json"


def test_artifact_name_with_quote_and_newline_is_refused(attack: Attack) -> None:
    run_id = _run_with_content(attack)
    r = _register(attack, run_id, 'evil".json\r\nSet-Cookie: lh_session=stolen')
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_artifact_name"
    assert r.json()["error"]["details"] == {"field": "name"}
    assert attack.client.get(f"/ops/runs/{run_id}/artifacts", headers=attack.headers("admin")).json() == \
        {"artifacts": []}


def test_artifact_name_with_a_quote_cannot_forge_disposition_parameters(attack: Attack) -> None:
    run_id = _run_with_content(attack)
    assert _register(attack, run_id, 'x"; filename="evil.exe').status_code == 201
    cd = _download(attack).headers["content-disposition"]
    assert cd.startswith('attachment; filename="x\\"; filename=\\"evil.exe"; filename*=UTF-8\'\'')
    assert "filename*=UTF-8''x%22%3B%20filename%3D%22evil.exe" in cd


def test_artifact_name_that_is_a_path_is_refused(attack: Attack) -> None:
    run_id = _run_with_content(attack)
    for name in ("../../secret.key", "a/b.json", "a\\b.json", "..", "x" * 201):
        r = _register(attack, run_id, name)
        assert r.status_code == 422, name
        assert r.json()["error"]["details"] == {"field": "name"}


def test_artifact_media_type_with_injected_header_is_refused(attack: Attack) -> None:
    run_id = _run_with_content(attack)
    for media_type in ("text/html\r\nSet-Cookie: a=b", "json", "text/html; charset=\"x\ny\"", "a/b/c", "é/x"):
        r = _register(attack, run_id, "a.json", media_type)
        assert r.status_code == 422, media_type
        assert r.json()["error"]["code"] == "invalid_media_type"
        assert r.json()["error"]["details"] == {"field": "media_type"}
    assert _register(attack, run_id, "a.csv", "text/csv; charset=utf-8").status_code == 201


# --- content-addressed storage is shared, reach is not (issue #10) -------------------------------------

SECRET = b"alpha's quarterly numbers: 4711"
SECRET_SHA = hashlib.sha256(SECRET).hexdigest()


def _artifact(attack: Attack, who: str, run_id: str, name: str, sha: str = SECRET_SHA, size: int = len(SECRET),
              **extra: str) -> Response:
    return attack.client.post("/ops/artifacts", headers=attack.headers(who), json={
        "run_id": run_id, "phase": "p", "name": name, "sha256": sha, "size_bytes": size,
        "media_type": "text/plain", "metadata": {}, **extra})


def _alpha_holds_secret(attack: Attack) -> str:
    """An alpha run whose executor uploaded and registered the secret; returns the alpha run id."""
    alpha = attack.run("admin", "alpha", [{"name": "p", "type": "noop"}])
    r = attack.client.put(f"/ops/artifacts/{SECRET_SHA}", params={"run_id": alpha["run_id"]}, content=SECRET,
                          headers=attack.headers("executor"))
    assert r.status_code == 200, r.text
    assert _artifact(attack, "executor", alpha["run_id"], "numbers.txt").status_code == 201
    assert attack.client.get(f"/ops/artifacts/{SECRET_SHA}", headers=attack.headers("alpha_viewer")).content == SECRET
    return str(alpha["run_id"])


def _missing(r: Response) -> bool:
    return r.status_code == 409 and r.json()["error"]["code"] == "content_missing"


def test_registering_another_workspaces_known_sha256_does_not_reach_its_content(attack: Attack) -> None:
    _alpha_holds_secret(attack)
    beta = attack.run("admin", "beta", [{"name": "p", "type": "noop"}])["run_id"]
    # the blob exists, but beta never held its bytes: as missing as content never uploaded
    assert _missing(_artifact(attack, "beta_executor", beta, "stolen.txt"))
    never = hashlib.sha256(b"never uploaded").hexdigest()
    assert _artifact(attack, "beta_executor", beta, "x.txt", sha=never).json()["error"]["message"] == \
        _artifact(attack, "beta_executor", beta, "stolen.txt").json()["error"]["message"]  # no existence oracle
    assert _missing(_artifact(attack, "beta_executor", beta, "stolen.txt", size=1))  # nor a size oracle
    # the shared pool serves alpha too, but neither it uploaded the secret as an account
    assert _missing(_artifact(attack, "executor", beta, "stolen.txt"))
    # an external reference (uri) is registered, and is still no way to the stored content
    assert _artifact(attack, "beta_executor", beta, "ref.txt", uri="s3://elsewhere/x").status_code == 201
    for who in ("beta_viewer", "beta_engineer", "beta_executor"):
        r = attack.client.get(f"/ops/artifacts/{SECRET_SHA}", headers=attack.headers(who))
        assert r.status_code == 404 and r.json()["error"]["code"] == "artifact_not_found", who
        assert SECRET not in r.content
    assert [a["name"] for a in attack.client.get(f"/ops/runs/{beta}/artifacts",
                                                  headers=attack.headers("beta_viewer")).json()["artifacts"]] \
        == ["ref.txt"]


def test_reaching_content_needs_uploading_its_bytes_dedupe_does_not_leak(attack: Attack) -> None:
    _alpha_holds_secret(attack)
    beta = attack.run("admin", "beta", [{"name": "p", "type": "noop"}])["run_id"]
    put = f"/ops/artifacts/{SECRET_SHA}"
    # "I already have it" is no upload: the body is hashed every time
    for body in (b"", b"guess"):
        r = attack.client.put(put, params={"run_id": beta}, content=body, headers=attack.headers("beta_executor"))
        assert r.status_code == 422 and r.json()["error"]["code"] == "sha256_mismatch"
    assert _missing(_artifact(attack, "beta_executor", beta, "stolen.txt"))
    # uploading for a run of a workspace the executor is not bound to is refused before any byte is kept
    alpha_run = attack.run("admin", "alpha", [{"name": "p", "type": "noop"}])["run_id"]
    mine = b"beta's own bytes"
    r = attack.client.put(f"/ops/artifacts/{hashlib.sha256(mine).hexdigest()}", params={"run_id": alpha_run},
                          content=mine, headers=attack.headers("beta_executor"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "run_not_found"
    # once beta uploads the same bytes itself, they are beta's too (stored once, reached by both)
    r = attack.client.put(put, params={"run_id": beta}, content=SECRET, headers=attack.headers("beta_executor"))
    assert r.status_code == 200, r.text
    assert _artifact(attack, "beta_executor", beta, "own.txt").status_code == 201
    assert attack.client.get(put, headers=attack.headers("beta_viewer")).content == SECRET
    assert attack.client.get(put, headers=attack.headers("alpha_viewer")).content == SECRET


def test_an_upload_without_a_run_counts_for_the_uploading_account_only(attack: Attack) -> None:
    _alpha_holds_secret(attack)
    beta = attack.run("admin", "beta", [{"name": "p", "type": "noop"}])["run_id"]
    other = attack.run("admin", "beta", [{"name": "p", "type": "noop"}])["run_id"]
    put = f"/ops/artifacts/{SECRET_SHA}"
    assert attack.client.put(put, content=SECRET, headers=attack.headers("executor")).status_code == 200
    assert _missing(_artifact(attack, "beta_executor", beta, "stolen.txt"))  # another account did
    assert attack.client.get(put, headers=attack.headers("beta_viewer")).status_code == 404
    # the account that sent the bytes registers them on a beta run: now beta's
    assert _artifact(attack, "executor", beta, "numbers.txt").status_code == 201
    assert attack.client.get(put, headers=attack.headers("beta_viewer")).content == SECRET
    assert _artifact(attack, "beta_executor", other, "numbers.txt").status_code == 201


def test_another_workspaces_query_result_cannot_be_registered_or_downloaded(attack: Attack) -> None:
    r = attack.client.post("/api/sql", headers=attack.headers("alpha_analyst"),
                           json={"sql": "SELECT 'victim-4711' AS s", "workspace": "alpha"})
    assert r.status_code == 200, r.text
    sha = r.json()["result_sha256"]
    size = BlobStore(attack.ctx.settings.artifacts_dir).path(sha).stat().st_size  # stored beside artifacts
    beta = attack.run("admin", "beta", [{"name": "p", "type": "noop"}])["run_id"]
    for who in ("beta_executor", "executor"):
        reg = _artifact(attack, who, beta, "result.parquet", sha=sha, size=size)
        assert _missing(reg), (who, reg.text)
    for who in ("beta_viewer", "beta_analyst", "beta_executor"):
        assert attack.client.get(f"/ops/artifacts/{sha}", headers=attack.headers(who)).status_code == 404
    # produced in alpha: alpha's executor may register it on an alpha run
    alpha = attack.run("admin", "alpha", [{"name": "p", "type": "noop"}])["run_id"]
    assert _artifact(attack, "executor", alpha, "result.parquet", sha=sha, size=size).status_code == 201
    assert attack.client.get(f"/ops/artifacts/{sha}", headers=attack.headers("alpha_viewer")).status_code == 200
