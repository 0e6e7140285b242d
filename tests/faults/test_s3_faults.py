"""Artifact store faults on S3: the endpoint answering 500/503, a request body cut midway, a download
cut midway.

S3 cannot run here: moto's server on loopback stands in for it, behind a fault-injecting HTTP proxy
(tests/s3_support.py) that the control plane is configured to use as its S3 endpoint. What the tests
look at in the bucket they ask moto directly. Whatever happens: no half-written or unchecked object
under a content key, no temporary object or open multipart upload left, nothing registered until an
upload succeeded, a clear 503 naming the store (``Retry-After`` when it may pass), and a phase whose
upload failed is failed with that message, retried, and its artifact registered exactly once.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from lakehouse.api.app import create_app
from lakehouse.domain.principal import SYSTEM
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.lake.s3store import S3BlobStore
from lakehouse.services import artifacts, runs
from lakehouse.services.context import Context, open_context
from lakehouse.settings import Settings
from lakehouse.store import artifacts as artifact_rows
from lakehouse.store.migrations import upgrade
from lakehouse.worker.client import ExecutorClient
from lakehouse.worker.context import PhaseContext
from lakehouse.worker.loop import Worker
from tests.e2e.harness import running_server
from tests.faults.conftest import make_tokens
from tests.s3_support import FaultProxy, keys, moto_s3, open_uploads, s3_settings

BUCKET = "faulty"
RUN = {"spec_slug": "art", "git_sha": "g", "phases": [{"name": "a", "type": "noop"}]}


@pytest.fixture(scope="module")
def moto() -> Iterator[tuple[str, Any]]:
    with moto_s3() as (endpoint, client):
        client.create_bucket(Bucket=BUCKET)
        yield endpoint, client


@pytest.fixture
def proxy(moto: tuple[str, Any]) -> Iterator[FaultProxy]:
    p = FaultProxy(moto[0])
    yield p
    p.close()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"f-{request.node.name}".replace("[", "-").replace("]", "")


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Multipart uploads at test sizes (1 KiB parts; moto's minimum part size lowered with them)."""
    import moto.s3.models

    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 256)
    monkeypatch.setattr(S3BlobStore, "part_bytes", 1024)


@pytest.fixture
def app(settings: Settings, proxy: FaultProxy, prefix: str) -> Iterator[tuple[TestClient, Context]]:
    """The control plane with its artifact store on s3://faulty/<test>, reached through the proxy."""
    ctx = open_context(settings.model_copy(update=s3_settings(proxy.endpoint, f"s3://{BUCKET}/{prefix}")))
    with TestClient(create_app(ctx, reaper=False)) as client:
        yield client, ctx
    ctx.db.dispose()


def attempts(ctx: Context) -> int:
    """How many times botocore sends a request before giving up (our client's retry setting)."""
    store = artifacts.store_for(ctx)
    assert isinstance(store, S3BlobStore)
    return int(store.client.meta.config.retries["total_max_attempts"])


def clean(s3: Any, prefix: str, sha: str | None = None) -> None:
    """Nothing but the checked content (if ``sha``) under the store's prefix, no open multipart upload."""
    assert keys(s3, BUCKET, prefix) == ([f"{prefix}/{sha[:2]}/{sha[2:4]}/{sha}"] if sha else [])
    assert open_uploads(s3, BUCKET, prefix) == []


def content_missing(client: TestClient, h: dict[str, str], run_id: str, data: bytes) -> bool:
    r = client.post("/ops/artifacts", headers=h, json={
        "run_id": run_id, "phase": "a", "name": "x.bin", "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data), "media_type": "application/octet-stream", "metadata": {}})
    return r.status_code == 409 and r.json()["error"]["code"] == "content_missing"


def test_a_single_503_is_retried_by_the_s3_client(app: tuple[TestClient, Context], proxy: FaultProxy,
                                                  moto: tuple[str, Any], prefix: str, admin_token: str) -> None:
    client, _ = app
    data = b"retried once"
    sha = hashlib.sha256(data).hexdigest()
    proxy.fail(1, 503, when=lambda m, p: m == "PUT")
    r = client.put(f"/ops/artifacts/{sha}", content=data, headers={"Authorization": f"Bearer {admin_token}"})
    assert r.status_code == 200, r.text
    assert proxy.failures() == 1
    clean(moto[1], prefix, sha)


# which S3 request of an upload fails: the first look-up, a part, the completion, the publishing copy
STAGES: dict[str, Callable[[str, str], bool]] = {
    "lookup": lambda m, p: m == "HEAD",
    "part": lambda m, p: m == "PUT" and "partNumber=2" in p,
    "complete": lambda m, p: m == "POST" and "uploadId=" in p,
    "copy": lambda m, p: m == "PUT" and "/.uploads/" not in p,
}


@pytest.mark.usefixtures("small_parts")
@pytest.mark.parametrize("stage, status", [(stage, 503) for stage in STAGES] + [("part", 500)])
def test_s3_failing_during_an_upload_is_a_503_and_registers_nothing(
        app: tuple[TestClient, Context], proxy: FaultProxy, moto: tuple[str, Any], prefix: str, admin_token: str,
        stage: str, status: int) -> None:
    client, ctx = app
    h = {"Authorization": f"Bearer {admin_token}"}
    data = bytes(range(256)) * 12  # 3 KiB: 3 parts
    sha = hashlib.sha256(data).hexdigest()
    proxy.fail(100, status, when=STAGES[stage])  # the S3 client's own retries fail as well
    r = client.put(f"/ops/artifacts/{sha}", content=data, headers=h)
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "artifact_store_unavailable"
    assert f"s3://{BUCKET}/{prefix}" in err["message"] and str(status) in err["message"]
    assert err["details"] == {"store": f"s3://{BUCKET}/{prefix}", "transient": True}
    assert r.headers["retry-after"]
    assert proxy.failures() == attempts(ctx)
    clean(moto[1], prefix)
    run = client.post("/ops/runs", json=RUN, headers=h).json()
    assert content_missing(client, h, run["run_id"], data)

    proxy.heal()  # S3 is back: the same upload goes through, once
    assert client.put(f"/ops/artifacts/{sha}", content=data, headers=h).status_code == 200
    clean(moto[1], prefix, sha)
    assert not content_missing(client, h, run["run_id"], data)


@pytest.mark.usefixtures("small_parts")
def test_a_request_body_cut_midway_leaves_nothing(app: tuple[TestClient, Context], proxy: FaultProxy,
                                                  moto: tuple[str, Any], prefix: str, admin_token: str) -> None:
    client, ctx = app
    h = {"Authorization": f"Bearer {admin_token}"}
    data = bytes(range(256)) * 12
    sha = hashlib.sha256(data).hexdigest()
    proxy.cut_request(100, when=lambda m, p: m == "PUT" and "partNumber=2" in p)
    r = client.put(f"/ops/artifacts/{sha}", content=data, headers=h)
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "artifact_store_unavailable"
    assert proxy.failures() == attempts(ctx)
    clean(moto[1], prefix)
    proxy.heal()
    assert client.put(f"/ops/artifacts/{sha}", content=data, headers=h).status_code == 200
    clean(moto[1], prefix, sha)


def test_a_phase_whose_upload_meets_an_outage_fails_clearly_retries_and_registers_once(
        app: tuple[TestClient, Context], proxy: FaultProxy, moto: tuple[str, Any], prefix: str,
        executor_token: str, tmp_path: Path) -> None:
    """A real worker (in this process, the app's TestClient as its HTTP connection): its first attempt
    uploads while S3 answers 503 to every try of the S3 client, fails with the server's message and is
    retried; the second attempt's upload goes through and is registered exactly once."""
    client, ctx = app
    data = b'{"report": "quarterly"}'
    sha = hashlib.sha256(data).hexdigest()
    seen: list[int] = []

    def report(pc: PhaseContext) -> dict[str, Any]:
        seen.append(pc.attempt)
        path = tmp_path / f"report-{pc.attempt}.json"
        path.write_bytes(data)
        pc.add_artifact("report.json", path, "application/json")
        return {}

    req = RunRequest(spec_slug="s3", git_sha="g", phases=[PhaseSpec(name="report", type="report", max_attempts=3)])
    run_id = str(runs.create_run(ctx, req, SYSTEM)[0]["run_id"])
    proxy.fail(attempts(ctx), 503)  # exactly the first upload's look-up, with its retries
    http = ExecutorClient("http://testserver", executor_token)
    http.http.close()
    client.headers["Authorization"] = f"Bearer {executor_token}"
    http.http = client  # type: ignore[assignment]  # TestClient is an httpx.Client speaking to the app
    for _ in range(5):  # a retry is due after the backoff: claim again until the run is done
        Worker(http, executor_id="s3-worker", handlers={"report": report}, once=True, wait_s=1).run()
        if runs.get_run(ctx, run_id, SYSTEM)["status"] in ("succeeded", "failed"):
            break
    run = runs.get_run(ctx, run_id, SYSTEM)
    assert run["status"] == "succeeded", run
    assert seen == [1, 2] and run["phases"][0]["attempt"] == 2
    events = runs.read_events(ctx, run_id, SYSTEM)
    failed = [e for e in events if e["type"] == "PHASE_FAILED"]
    assert len(failed) == 1 and "artifact_store_unavailable" in failed[0]["message"] + str(failed[0]["payload"])
    kinds = collections.Counter(e["type"] for e in events)
    assert kinds["ARTIFACT_REGISTERED"] == 1
    assert [a["sha256"] for a in artifacts.list_for_run(ctx, run_id, SYSTEM)] == [sha]
    clean(moto[1], prefix, sha)


@pytest.mark.slow
def test_a_download_cut_midway_is_a_short_body_the_client_sees(tmp_path: Path, moto: tuple[str, Any],
                                                                proxy: FaultProxy, prefix: str) -> None:
    """A real server process: S3 stops sending halfway through an artifact the control plane is
    streaming. The answer has started (200), so it cannot become an error; it carries the blob's
    Content-Length, and the connection is closed short of it, which the client sees."""
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'control.db'}"
    home.mkdir()
    upgrade(url)
    eng, executor = make_tokens(home, url)
    data = bytes(range(256)) * 4096  # 1 MiB
    sha = hashlib.sha256(data).hexdigest()
    with running_server(home, url, **s3_settings(proxy.endpoint, f"s3://{BUCKET}/{prefix}")) as server:
        h = {"Authorization": f"Bearer {executor}"}
        assert httpx.put(f"{server.base}/ops/artifacts/{sha}", content=data, headers=h).status_code == 200
        run = httpx.post(f"{server.base}/ops/runs", json=RUN, headers={"Authorization": f"Bearer {eng}"}).json()
        assert httpx.post(f"{server.base}/ops/artifacts", headers=h, json={
            "run_id": run["run_id"], "phase": "a", "name": "big.bin", "sha256": sha, "size_bytes": len(data),
            "media_type": "application/octet-stream", "metadata": {}}).status_code == 201
        proxy.cut_response(100, when=lambda m, p: m == "GET" and p.split("?")[0].endswith(sha))
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"{server.base}/ops/artifacts/{sha}", headers={"Authorization": f"Bearer {eng}"})
        proxy.heal()
        whole = httpx.get(f"{server.base}/ops/artifacts/{sha}", headers={"Authorization": f"Bearer {eng}"})
        assert whole.status_code == 200 and whole.content == data
    clean(moto[1], prefix, sha)
    with open_context(Settings(home=home, database_url=url)).db.read() as conn:
        assert artifact_rows.blob(conn, sha) is not None
