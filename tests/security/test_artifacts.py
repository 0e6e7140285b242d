"""Artifact names and media types: what an executor registers ends up in response headers."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
from urllib.parse import quote

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
