"""Artifact store faults: a full store, an upload cut off midway, an upload that stalls.

Whatever happens, no half-written blob is stored or registered, no temporary file is left behind,
and the client gets a clear answer (507 naming the store), never ``internal_error``.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from lakehouse.api.app import create_app
from lakehouse.services.context import Context, open_context
from lakehouse.settings import Settings
from tests.e2e.harness import running_server, wait_for
from tests.faults.conftest import make_tokens

RUN = {"spec_slug": "art", "git_sha": "g", "phases": [{"name": "a", "type": "noop"}]}


def leftovers(store: Path) -> list[Path]:
    return [p for p in store.rglob("*") if p.is_file() and p.name.startswith(".upload-")]


def blobs(store: Path) -> list[Path]:
    return [p for p in store.rglob("*") if p.is_file() and not p.name.startswith(".")]


@pytest.fixture
def capped(settings: Settings) -> Iterator[tuple[TestClient, Context]]:
    ctx = open_context(settings.model_copy(update={"artifact_store_max_bytes": 1000}))
    with TestClient(create_app(ctx, reaper=False)) as client:
        yield client, ctx
    ctx.db.dispose()


def test_a_full_store_answers_507_naming_it_and_registers_nothing(capped: tuple[TestClient, Context],
                                                                  admin_token: str) -> None:
    client, ctx = capped
    h = {"Authorization": f"Bearer {admin_token}"}
    first, second = b"a" * 600, b"b" * 600
    sha1, sha2 = hashlib.sha256(first).hexdigest(), hashlib.sha256(second).hexdigest()
    assert client.put(f"/ops/artifacts/{sha1}", content=first, headers=h).status_code == 200
    r = client.put(f"/ops/artifacts/{sha2}", content=second, headers=h)
    assert r.status_code == 507, r.text
    err = r.json()["error"]
    assert err["code"] == "insufficient_storage"
    assert str(ctx.settings.artifacts_dir) in err["message"] and err["details"]["store"]
    run = client.post("/ops/runs", json=RUN, headers=h).json()
    reg = client.post("/ops/artifacts", headers=h, json={
        "run_id": run["run_id"], "phase": "a", "name": "b.bin", "sha256": sha2, "size_bytes": 600,
        "media_type": "application/octet-stream", "metadata": {}})
    assert reg.status_code == 409 and reg.json()["error"]["code"] == "content_missing"
    assert leftovers(ctx.settings.artifacts_dir) == []
    assert [p.name for p in blobs(ctx.settings.artifacts_dir)] == [sha1]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_full_disk_answers_507_not_internal_error(settings: Settings, admin_token: str, tmp_path: Path) -> None:
    store = settings.artifacts_dir
    store.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(store)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root); the capped-store test covers the answer")
    try:
        ctx = open_context(settings)
        with TestClient(create_app(ctx, reaper=False)) as client:
            data = b"x" * 200_000
            r = client.put(f"/ops/artifacts/{hashlib.sha256(data).hexdigest()}", content=data,
                           headers={"Authorization": f"Bearer {admin_token}"})
        ctx.db.dispose()
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "insufficient_storage" and str(store) in r.json()["error"]["message"]
        assert leftovers(store) == [] and blobs(store) == []
    finally:
        subprocess.run(["umount", str(store)], check=False)


def _put_prefix(base: str, token: str, sha: str, total: int, sent: bytes) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)))
    s.sendall(f"PUT /ops/artifacts/{sha} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
              f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n".encode() + sent)
    return s


@pytest.mark.slow
def test_cut_off_and_stalled_uploads_leave_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'control.db'}"
    from lakehouse.store.migrations import upgrade

    home.mkdir()
    upgrade(url)
    eng, executor = make_tokens(home, url)
    store = home / "artifacts"
    with running_server(home, url, body_timeout_s=1) as server:
        h = {"Authorization": f"Bearer {executor}"}
        data = b"z" * 300_000
        sha = hashlib.sha256(data).hexdigest()

        cut = _put_prefix(server.base, executor, sha, len(data), data[:100_000])
        wait_for(lambda: leftovers(store), 10, what="the upload's temporary file")
        cut.close()  # the client goes away mid-body
        wait_for(lambda: not leftovers(store), 10, what="the cut-off upload's temporary file to go")

        stalled = _put_prefix(server.base, executor, sha, len(data), data[:50_000])
        wait_for(lambda: leftovers(store), 10, what="the upload's temporary file")
        stalled.settimeout(30)
        assert stalled.recv(100) == b""  # closed by the server's body-read timeout, no answer
        stalled.close()
        wait_for(lambda: not leftovers(store), 10, what="the stalled upload's temporary file to go")

        assert blobs(store) == []
        run = httpx.post(f"{server.base}/ops/runs", json=RUN, headers={"Authorization": f"Bearer {eng}"}).json()
        reg = httpx.post(f"{server.base}/ops/artifacts", headers=h, json={
            "run_id": run["run_id"], "phase": "a", "name": "z.bin", "sha256": sha, "size_bytes": len(data),
            "media_type": "application/octet-stream", "metadata": {}})
        assert reg.status_code == 409 and reg.json()["error"]["code"] == "content_missing"
        assert httpx.put(f"{server.base}/ops/artifacts/{sha}", content=data, headers=h).status_code == 200
        assert [p.name for p in blobs(store)] == [sha] and not leftovers(store)
