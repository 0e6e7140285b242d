"""The upload sweeper: what cut-off uploads and crashed processes leave in the artifact stores is removed
once idle longer than ``LAKEHOUSE_UPLOAD_SWEEP_AGE_S``; younger leftovers, uploads in progress and
completed blobs are kept.

S3 is moto's server on loopback (tests/s3_support.py). moto reports every multipart upload as
initiated on a fixed date in 2010, so there the newest part's time decides whether a multipart upload
is idle (as it does on S3 for an upload that has parts); moto's times are whole seconds, so the tests
put a second boundary between the old and the young leftovers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lakehouse.lake.blobstore import BlobStore
from lakehouse.lake.s3store import S3BlobStore
from lakehouse.services import upload_sweeper
from lakehouse.services.context import Context, open_context
from lakehouse.settings import Settings
from tests.s3_support import keys, moto_s3, open_uploads, s3_settings

HOUR = 3600.0
BUCKET = "sweep"


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def _blob(store: BlobStore, data: bytes) -> str:
    src = store.root.parent / "src.bin"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    store.put_file(sha, src)
    return sha


def test_local_store_removes_idle_leftovers_only(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "artifacts")
    sha = _blob(store, b"a finished blob")
    _age(store.path(sha), 10 * HOUR)  # a completed blob is never a leftover, however old
    (store.root / ".tmp").mkdir()
    old_upload, young_upload = store.root / ".upload-old", store.root / ".upload-young"
    old_result, young_result = store.root / ".tmp" / "blob-old.parquet", store.root / ".tmp" / "blob-new.parquet"
    for path, size in ((old_upload, 100), (young_upload, 10), (old_result, 7), (young_result, 3)):
        path.write_bytes(b"x" * size)
    _age(old_upload, 2 * HOUR)
    _age(old_result, HOUR + 5)
    _age(young_upload, HOUR - 60)

    swept = store.sweep_uploads(HOUR)

    assert (swept.removed, swept.bytes, swept.kept, swept.aborted) == (2, 107, 2, 0)
    assert not old_upload.exists() and not old_result.exists()
    assert young_upload.exists() and young_result.exists()
    assert store.path(sha).read_bytes() == b"a finished blob"
    assert store.sweep_uploads(HOUR).removed == 0


def test_local_upload_in_progress_survives_a_sweep(tmp_path: Path) -> None:
    """A sweep between two chunks of a running upload (with an age of 0 s: everything idle goes) does not
    break it: the upload's temporary file was written a moment ago."""
    store = BlobStore(tmp_path / "artifacts")
    data = [b"a" * 70_000, b"b" * 70_000, b"c" * 10]
    sha = hashlib.sha256(b"".join(data)).hexdigest()
    seen: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in data:
            yield chunk
            await asyncio.sleep(0.05)
            seen.append(store.sweep_uploads(1.0).kept)

    assert asyncio.run(store.put_stream(sha, chunks(), 1 << 20)) == 140_010
    assert seen[0] == 1, "the running upload's temporary file was looked at and kept"
    assert store.path(sha).stat().st_size == 140_010
    assert list(store.root.glob(".upload-*")) == []


@pytest.fixture(scope="module")
def moto() -> Iterator[tuple[str, Any]]:
    with moto_s3() as (endpoint, client):
        client.create_bucket(Bucket=BUCKET)
        yield endpoint, client


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    import moto.s3.models

    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", 256)
    monkeypatch.setattr(S3BlobStore, "part_bytes", 1024)


def _open_multipart(client: Any, key: str, parts: int) -> str:
    upload_id: str = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    for n in range(1, parts + 1):
        client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=n, Body=b"p" * 1024)
    return upload_id


def _next_second() -> float:
    """Wait until just after the next whole second (moto's times are whole seconds); returns it."""
    boundary = math.floor(time.time()) + 1.0
    time.sleep(boundary - time.time() + 0.05)
    return boundary


def test_s3_removes_idle_temporary_objects_and_aborts_idle_multipart_uploads(
        moto: tuple[str, Any], small_parts: None, tmp_path: Path) -> None:
    endpoint, client = moto
    store = S3BlobStore.from_settings(Settings(home=tmp_path, **s3_settings(endpoint, f"s3://{BUCKET}/arts")))
    data = b"z" * 3000  # three parts: a multipart upload completed, copied and its temporary object deleted
    sha = hashlib.sha256(data).hexdigest()
    (tmp_path / "blob.bin").write_bytes(data)
    store.put_file(sha, tmp_path / "blob.bin")
    up = "arts/.uploads/"
    client.put_object(Bucket=BUCKET, Key=up + "old-object", Body=b"o" * 50)
    _open_multipart(client, up + "old-multipart", 2)
    _open_multipart(client, up + "old-empty", 0)  # started, no part written: idle since 2010 on moto
    running = _open_multipart(client, up + "still-running", 1)
    client.put_object(Bucket=BUCKET, Key="arts/.uploadsx/not-ours", Body=b"n")  # outside the prefix
    cutoff = _next_second()
    client.put_object(Bucket=BUCKET, Key=up + "young-object", Body=b"y")
    _open_multipart(client, up + "young-multipart", 1)
    client.upload_part(Bucket=BUCKET, Key=up + "still-running", UploadId=running, PartNumber=2, Body=b"q" * 1024)

    swept = store.sweep_uploads(HOUR, now=cutoff + HOUR)

    assert (swept.removed, swept.bytes, swept.aborted) == (1, 50, 2)
    assert swept.kept == 3  # the young object, the young multipart upload, the one still getting parts
    assert sorted(keys(client, BUCKET, up)) == [up + "young-object"]
    assert sorted(open_uploads(client, BUCKET, up)) == [up + "still-running", up + "young-multipart"]
    assert store.exists(sha) and b"".join(store.open(sha) or []) == data
    assert keys(client, BUCKET, "arts/.uploadsx/") == ["arts/.uploadsx/not-ours"]
    # a later sweep takes what has gone idle since, and nothing else
    later = store.sweep_uploads(HOUR, now=time.time() + 2 * HOUR)
    assert (later.removed, later.aborted) == (1, 2)
    assert keys(client, BUCKET, up) == [] and open_uploads(client, BUCKET, up) == []
    assert store.exists(sha)


def test_the_pass_sweeps_both_stores_and_logs_the_counts(
        moto: tuple[str, Any], settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    endpoint, client = moto
    ctx: Context = open_context(settings.model_copy(update={
        **s3_settings(endpoint, f"s3://{BUCKET}/pass"), "upload_sweep_age_s": 600.0}))
    try:
        local = ctx.settings.artifacts_dir
        local.mkdir(parents=True, exist_ok=True)
        (local / ".upload-crashed").write_bytes(b"abc")
        _age(local / ".upload-crashed", 601)
        client.put_object(Bucket=BUCKET, Key="pass/.uploads/crashed", Body=b"defg")
        _open_multipart(client, "pass/.uploads/crashed-mp", 0)
        with caplog.at_level(logging.INFO, logger="lakehouse.artifacts"):
            assert upload_sweeper.run_pass(ctx, force=True) is not None
            assert upload_sweeper.run_pass(ctx) is None, "the next pass waits a quarter of the age"
        # the S3 object is seconds old: kept; the local file and the part-less multipart upload are gone
        assert not (local / ".upload-crashed").exists()
        assert keys(client, BUCKET, "pass/.uploads/") == ["pass/.uploads/crashed"]
        assert open_uploads(client, BUCKET, "pass/.uploads/") == []
        [line] = [r for r in caplog.records if r.getMessage() == "upload sweep"]
        assert (line.removed, line.bytes, line.aborted, line.age_s) == (1, 3, 1, 600.0)  # type: ignore[attr-defined]
        assert set(line.stores) == {str(local), f"s3://{BUCKET}/pass"}  # type: ignore[attr-defined]
    finally:
        ctx.db.dispose()


def test_the_age_must_exceed_the_body_and_query_timeouts(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="upload_sweep_age_s"):
        Settings(home=tmp_path, upload_sweep_age_s=60, body_timeout_s=60)
    with pytest.raises(ValidationError, match="sql_max_timeout_s"):
        Settings(home=tmp_path, upload_sweep_age_s=200)  # the query timeout is 300 s
    assert Settings(home=tmp_path, upload_sweep_age_s=0).upload_sweep_age_s == 0  # off
    assert Settings(home=tmp_path).upload_sweep_age_s == HOUR
