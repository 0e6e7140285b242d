"""The artifact store on S3 (``LAKEHOUSE_ARTIFACT_STORE=s3://bucket/prefix``): one object per sha256.

Executors never talk to S3: they upload to and download from the control plane (the executor
contract), which streams to and from the bucket. The layout is the local store's
(``prefix/ab/cd/<sha256>``), so ``aws s3 sync $LAKEHOUSE_HOME/artifacts s3://bucket/prefix`` moves a
local store over.

An upload is written under a temporary key (``prefix/.uploads/<random>``, in parts of
:attr:`S3BlobStore.part_bytes` as it arrives) while its sha256 is computed; only once the whole body
arrived and its hash matched is it copied server-side to its content-addressed key and the temporary
object deleted. A cut-off, refused or mismatching upload aborts the multipart upload or deletes the
temporary object, so the content key never holds anything but the full, checked content, and the
caller registers the blob only after :meth:`S3BlobStore.put_stream` returned. Content already stored
is not written again (the body is still read and its hash checked). What a killed process leaves under
``.uploads/`` (a temporary object, an open multipart upload) :meth:`S3BlobStore.sweep_uploads` removes
once it is idle long enough.

S3 errors become :class:`StoreUnavailable` naming the store: transient (5xx, throttling, unreachable;
botocore first retries them itself, ``standard`` mode) or a misconfiguration (no such bucket,
credentials refused). Credentials never appear in a message.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Generator
from datetime import datetime
from pathlib import Path
from typing import Any

from lakehouse.lake.blobstore import HashMismatch, StoreUnavailable, Swept, TooBig
from lakehouse.settings import Settings

log = logging.getLogger("lakehouse.artifacts")

_clients: dict[tuple[tuple[str, str], ...], Any] = {}
_clients_lock = threading.Lock()

_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken",
                     "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "AuthorizationHeaderMalformed",
                     "InvalidClientTokenId", "UnrecognizedClientException", "403", "401"}
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "Throttling",
                    "ThrottlingException", "RequestTimeTooSkewed"}


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → (bucket, prefix without slashes at either end)."""
    if not url.startswith("s3://"):
        raise ValueError(f"artifact_store must be empty (a local folder) or s3://bucket/prefix, not {url!r}")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"artifact_store {url!r} names no bucket (s3://bucket/prefix)")
    return bucket, prefix.strip("/")


def client_for(props: dict[str, str]) -> Any:
    """A botocore S3 client for these ``s3.*`` properties (one per configuration, thread-safe)."""
    key = tuple(sorted(props.items()))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            import botocore.session
            from botocore.config import Config

            virtual = props.get("s3.force-virtual-addressing") == "true"
            config = Config(s3={"addressing_style": "virtual" if virtual else "path"},
                            retries={"mode": "standard", "total_max_attempts": 3},
                            connect_timeout=5, read_timeout=60, max_pool_connections=32)
            session = botocore.session.Session()
            client = session.create_client(
                "s3", endpoint_url=props.get("s3.endpoint") or None, region_name=props.get("s3.region") or None,
                aws_access_key_id=props.get("s3.access-key-id") or None,
                aws_secret_access_key=props.get("s3.secret-access-key") or None,
                aws_session_token=props.get("s3.session-token") or None, config=config)
            _clients[key] = client
        return client


class S3BlobStore:
    part_bytes = 8 << 20  # multipart part size of uploads (S3's minimum is 5 MiB, the last part excepted)
    copy_limit_bytes = 5 << 30  # S3's largest CopyObject; larger blobs are copied in parts
    copy_part_bytes = 1 << 30

    def __init__(self, url: str, props: dict[str, str]) -> None:
        self.url = url.rstrip("/")
        self.bucket, self.prefix = parse_url(url)
        self.client = client_for(props)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        return cls(settings.artifact_store, settings.s3_properties())

    def describe(self) -> str:
        return self.url

    def key(self, sha256: str) -> str:
        name = f"{sha256[:2]}/{sha256[2:4]}/{sha256}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def temp_key(self) -> str:
        return f"{self.uploads_prefix()}{uuid.uuid4().hex}"

    def uploads_prefix(self) -> str:
        return f"{self.prefix}/.uploads/" if self.prefix else ".uploads/"

    def uri(self, sha256: str) -> str:
        return f"s3://{self.bucket}/{self.key(sha256)}"

    def error(self, exc: Exception, doing: str) -> StoreUnavailable:
        """An S3 or botocore error as a clear :class:`StoreUnavailable` (never a credential in it)."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code") or "")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code == "NoSuchBucket":
                return StoreUnavailable(self.url, f"cannot {doing}: its bucket {self.bucket!r} does not exist "
                                        "(NoSuchBucket); create it or fix LAKEHOUSE_ARTIFACT_STORE", transient=False)
            if code in _CREDENTIAL_CODES or status in (401, 403):
                return StoreUnavailable(self.url, f"refused our credentials when asked to {doing} ({code or status}); "
                                        "check LAKEHOUSE_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY and the bucket's policy",
                                        transient=False)
            if status >= 500 or code in _TRANSIENT_CODES:
                return StoreUnavailable(self.url, f"answered {status} {code} when asked to {doing}; "
                                        "repeat the request in a moment", transient=True)
            return StoreUnavailable(self.url, f"refused to {doing}: {status} {code}", transient=False)
        if isinstance(exc, NoCredentialsError):
            return StoreUnavailable(self.url, f"cannot {doing}: no S3 credentials are configured "
                                    "(LAKEHOUSE_S3_ACCESS_KEY_ID or the AWS_* environment)", transient=False)
        if isinstance(exc, BotoCoreError):
            return StoreUnavailable(self.url, f"could not be reached to {doing} ({type(exc).__name__}); "
                                    "repeat the request in a moment", transient=True)
        return StoreUnavailable(self.url, f"failed to {doing} ({type(exc).__name__})", transient=True)

    def _call(self, doing: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except Exception as exc:
            if _is_s3_error(exc):
                raise self.error(exc, doing) from exc
            raise

    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
            return True
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self.error(exc, "look up an artifact") from exc
        except Exception as exc:
            if _is_s3_error(exc):
                raise self.error(exc, "look up an artifact") from exc
            raise

    async def put_stream(self, sha256: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        digest = hashlib.sha256()
        size = 0
        upload = None if await asyncio.to_thread(self.exists, sha256) else _Upload(self)
        buffer = bytearray()
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise TooBig(f"artifact is larger than {max_bytes} bytes")
                digest.update(chunk)
                if upload is not None:
                    buffer += chunk
                    while len(buffer) > self.part_bytes:  # the last part may be short, never empty
                        part = bytes(buffer[:self.part_bytes])
                        del buffer[:self.part_bytes]
                        await asyncio.to_thread(upload.part, part)
            actual = digest.hexdigest()
            if actual != sha256:
                raise HashMismatch(sha256, actual)
            if upload is not None:
                await asyncio.to_thread(upload.finish, bytes(buffer), sha256, size)
            return size
        except BaseException:
            if upload is not None:
                await _abort(upload)
            raise

    def put_file(self, sha256: str, path: Path) -> int:
        size = path.stat().st_size
        if self.exists(sha256):
            return size
        upload = _Upload(self)
        try:
            with path.open("rb") as fh:
                block = fh.read(self.part_bytes)
                while True:
                    nxt = fh.read(self.part_bytes)
                    if not nxt:
                        break
                    upload.part(block)
                    block = nxt
            upload.finish(block, sha256, size)
        except BaseException:
            upload.abort()
            raise
        return size

    def open(self, sha256: str) -> Generator[bytes, None, None] | None:
        from botocore.exceptions import ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key(sha256))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404"):
                return None
            raise self.error(exc, "read an artifact") from exc
        except Exception as exc:
            if _is_s3_error(exc):
                raise self.error(exc, "read an artifact") from exc
            raise
        return self._chunks(answer["Body"], sha256)

    def _chunks(self, body: Any, sha256: str) -> Generator[bytes, None, None]:
        try:
            yield from body.iter_chunks(1 << 20)
        except Exception as exc:  # the answer has started: the client sees a body shorter than its length
            log.error("artifact read cut off", extra={"sha256": sha256, "store": self.url,
                                                      "error": type(exc).__name__})
            raise
        finally:
            body.close()

    def sweep_uploads(self, older_than: float, now: float | None = None) -> Swept:
        """Delete the temporary objects under ``prefix/.uploads/`` last written more than ``older_than``
        seconds before ``now``, and abort the multipart uploads there whose newest part (or, without
        parts, whose start) is as old. An upload in progress writes a part every :attr:`part_bytes`
        (8 MiB) it receives, so an age of an hour leaves alone any upload arriving faster than about
        2.3 KB/s (a stalled one is closed after the body-read timeout anyway); a temporary object lives
        only between the end of its upload and the copy to its content key. Content keys are never
        listed."""
        cutoff = (time.time() if now is None else now) - older_than
        tmp = self.uploads_prefix()
        removed = size = kept = aborted = 0
        stale: list[str] = []
        token: str | None = None
        while True:
            page = self._call("list abandoned uploads", "list_objects_v2", Prefix=tmp,
                              **({"ContinuationToken": token} if token else {}))
            for obj in page.get("Contents", []):
                if _ts(obj["LastModified"]) >= cutoff:
                    kept += 1
                    continue
                stale.append(obj["Key"])
                size += int(obj.get("Size") or 0)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
        for start in range(0, len(stale), 1000):  # DeleteObjects takes at most 1000 keys
            batch = stale[start:start + 1000]
            answer = self._call("delete abandoned uploads", "delete_objects",
                                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            removed += len(batch) - len(answer.get("Errors") or [])
        markers: dict[str, str] = {}
        while True:
            page = self._call("list abandoned multipart uploads", "list_multipart_uploads", Prefix=tmp, **markers)
            for up in page.get("Uploads", []):
                if _ts(up["Initiated"]) >= cutoff or self._last_part(up["Key"], up["UploadId"]) >= cutoff:
                    kept += 1
                    continue
                self._call("abort an abandoned multipart upload", "abort_multipart_upload", Key=up["Key"],
                           UploadId=up["UploadId"])
                aborted += 1
            if not page.get("IsTruncated"):
                break
            markers = {"KeyMarker": page.get("NextKeyMarker") or "",
                       "UploadIdMarker": page.get("NextUploadIdMarker") or ""}
        return Swept(removed=removed, bytes=size, aborted=aborted, kept=kept)

    def _last_part(self, key: str, upload_id: str) -> float:
        """When the newest part of a multipart upload was written (0 when it has none)."""
        newest = 0.0
        marker: dict[str, int] = {}
        while True:
            page = self._call("list an upload's parts", "list_parts", Key=key, UploadId=upload_id, **marker)
            for part in page.get("Parts", []):
                newest = max(newest, _ts(part["LastModified"]))
            if not page.get("IsTruncated"):
                return newest
            marker = {"PartNumberMarker": int(page.get("NextPartNumberMarker") or 0)}


def _ts(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


class _Upload:
    """One upload under a temporary key: parts as they come, then a server-side copy to the content key."""

    def __init__(self, store: S3BlobStore) -> None:
        self.store = store
        self.tmp = store.temp_key()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.written = False  # the temporary object exists (to delete)

    def part(self, data: bytes) -> None:
        s = self.store
        if self.upload_id is None:
            self.upload_id = s._call("start an upload", "create_multipart_upload", Key=self.tmp)["UploadId"]
        number = len(self.parts) + 1
        answer = s._call("store an upload's part", "upload_part", Key=self.tmp, UploadId=self.upload_id,
                         PartNumber=number, Body=data)
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def finish(self, last: bytes, sha256: str, size: int) -> None:
        """Write the rest, then publish the checked content under its key and drop the temporary object."""
        s = self.store
        if self.upload_id is None:
            s._call("store an upload", "put_object", Key=self.tmp, Body=last)
        else:
            if last or not self.parts:
                self.part(last)
            s._call("complete an upload", "complete_multipart_upload", Key=self.tmp, UploadId=self.upload_id,
                    MultipartUpload={"Parts": self.parts})
            self.upload_id = None
        self.written = True
        self._copy(s.key(sha256), size)
        self._delete_tmp()

    def _copy(self, dest: str, size: int) -> None:
        s = self.store
        source = {"Bucket": s.bucket, "Key": self.tmp}
        if size <= s.copy_limit_bytes:
            s._call("publish an upload", "copy_object", Key=dest, CopySource=source)
            return
        upload_id = s._call("publish an upload", "create_multipart_upload", Key=dest)["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, size, s.copy_part_bytes), 1):
                end = min(start + s.copy_part_bytes, size) - 1
                answer = s._call("publish an upload", "upload_part_copy", Key=dest, UploadId=upload_id,
                                 PartNumber=number, CopySource=source, CopySourceRange=f"bytes={start}-{end}")
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            s._call("publish an upload", "complete_multipart_upload", Key=dest, UploadId=upload_id,
                    MultipartUpload={"Parts": parts})
        except BaseException:
            _quietly(lambda: s.client.abort_multipart_upload(Bucket=s.bucket, Key=dest, UploadId=upload_id))
            raise

    def _delete_tmp(self) -> None:
        s = self.store
        if self.written:
            _quietly(lambda: s.client.delete_object(Bucket=s.bucket, Key=self.tmp))
            self.written = False

    def abort(self) -> None:
        """Leave nothing of this upload behind (best effort: a bucket lifecycle rule on ``.uploads/``
        catches what a crash or an unreachable S3 leaves)."""
        s = self.store
        if self.upload_id is not None:
            upload_id = self.upload_id
            _quietly(lambda: s.client.abort_multipart_upload(Bucket=s.bucket, Key=self.tmp, UploadId=upload_id))
            self.upload_id = None
        self._delete_tmp()


async def _abort(upload: _Upload) -> None:
    try:
        await asyncio.to_thread(upload.abort)
    except asyncio.CancelledError:  # the request was cancelled: clean up all the same
        threading.Thread(target=upload.abort, name="s3-abort", daemon=True).start()
        raise


def _quietly(call: Any) -> None:
    try:
        call()
    except Exception as exc:
        log.warning("artifact store clean-up failed; the bucket's lifecycle rule removes the leftover",
                    extra={"error": type(exc).__name__})


def _is_s3_error(exc: Exception) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, ClientError | BotoCoreError)
