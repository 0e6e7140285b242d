"""Content-addressed blob stores (one blob per sha256): :class:`BlobStore` under
``LAKEHOUSE_HOME/artifacts``, and :class:`lakehouse.lake.s3store.S3BlobStore` on ``s3://bucket/prefix``;
both follow :class:`ArtifactStore`.

An upload is written to a temporary file (object) in the store and moved into place only once complete and
its sha256 checked: a cut-off, refused or stalled upload leaves neither a blob nor its temporary file.
What a killed process could not clean up, ``sweep_uploads`` removes once it is old enough (the control
plane runs it periodically, ``services/upload_sweeper.py``).
A full disk, or a store past its optional capacity, raises :class:`StoreFull` naming the store; a store
that cannot be reached or refuses us (S3 answering 5xx, a missing bucket, bad credentials) raises
:class:`StoreUnavailable` naming it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class HashMismatch(ValueError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"content sha256 is {actual}, not {expected}")
        self.expected = expected
        self.actual = actual


class TooBig(ValueError):
    pass


class StoreFull(OSError):
    """No room left in the artifact store: the disk is full or the store's capacity is reached."""

    def __init__(self, store: Path, reason: str) -> None:
        super().__init__(errno.ENOSPC, f"the artifact store {store} is full: {reason}")
        self.store = str(store)

    def __str__(self) -> str:
        return str(self.args[1])


class StoreUnavailable(Exception):
    """The artifact store cannot serve the request: ``transient`` when repeating it later may work (S3
    answering 500/503, throttling, the endpoint unreachable), else the store is misconfigured (the bucket
    does not exist, the credentials are refused). The message names the store, never a credential."""

    def __init__(self, store: str, message: str, *, transient: bool) -> None:
        super().__init__(f"the artifact store {store} {message}")
        self.store = store
        self.transient = transient

    @property
    def code(self) -> str:
        return "artifact_store_unavailable" if self.transient else "artifact_store_misconfigured"


@dataclass(frozen=True)
class Swept:
    """What one :meth:`~ArtifactStore.sweep_uploads` removed: temporary files (objects) and their bytes,
    multipart uploads aborted, and leftovers kept because they are younger than the age."""

    removed: int = 0
    bytes: int = 0
    aborted: int = 0
    kept: int = 0


class ArtifactStore(Protocol):
    """What the artifact service needs of a content-addressed store."""

    def describe(self) -> str:
        """Where the store is (a folder or ``s3://bucket/prefix``), for messages."""
        ...

    def uri(self, sha256: str) -> str: ...

    def exists(self, sha256: str) -> bool: ...

    async def put_stream(self, sha256: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        """Store a stream under its sha256 (checked); returns its size. Nothing is stored otherwise."""
        ...

    def put_file(self, sha256: str, path: Path) -> int:
        """Store a local file whose sha256 is known (copied, the file is left as it is); returns its size."""
        ...

    def open(self, sha256: str) -> Generator[bytes, None, None] | None:
        """The content in chunks, or None when the store does not hold it (errors raise here, before
        the first chunk, so an answer can still say what went wrong)."""
        ...

    def sweep_uploads(self, older_than: float, now: float | None = None) -> Swept:
        """Remove what uploads cut off or crashed left behind: temporary files (objects) untouched for
        ``older_than`` seconds at ``now`` (default: the clock), and on S3 the multipart uploads idle as
        long. Completed blobs are never touched."""
        ...


_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_usage_lock = threading.Lock()
_usage: dict[Path, int] = {}  # bytes stored per capped store root (scanned once per process)


class BlobStore:
    def __init__(self, root: Path, capacity_bytes: int | None = None) -> None:
        self.root = root
        self.capacity_bytes = capacity_bytes or None

    def used_bytes(self) -> int:
        """Bytes of the blobs in the store (scanned once, then kept up to date by this process)."""
        with _usage_lock:
            if self.root not in _usage:
                _usage[self.root] = sum(p.stat().st_size for p in self.root.glob("??/??/*") if p.is_file())
            return _usage[self.root]

    def _account(self, size: int) -> None:
        with _usage_lock:
            if self.root in _usage:
                _usage[self.root] += size

    def _check_room(self, size: int) -> None:
        if self.capacity_bytes is not None and self.used_bytes() + size > self.capacity_bytes:
            raise StoreFull(self.root, f"its capacity of {self.capacity_bytes} bytes is reached")

    def describe(self) -> str:
        return str(self.root)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def uri(self, sha256: str) -> str:
        return self.path(sha256).as_uri()

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    async def put_stream(self, sha256: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        """Write a stream, verify its sha256 and move it into place; returns its size."""
        digest = hashlib.sha256()
        size = 0
        tmp = ""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".upload-")
            with os.fdopen(fd, "wb") as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooBig(f"artifact is larger than {max_bytes} bytes")
                    self._check_room(size)
                    digest.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())  # a blob is registered only once its bytes are on disk
            actual = digest.hexdigest()
            if actual != sha256:
                raise HashMismatch(sha256, actual)
            dest = self.path(sha256)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                os.unlink(tmp)
            else:
                os.replace(tmp, dest)
                self._account(size)
            return size
        except OSError as exc:
            if exc.errno in _FULL_ERRNOS and not isinstance(exc, StoreFull):
                raise StoreFull(self.root, os.strerror(exc.errno or errno.ENOSPC).lower()) from exc
            raise
        finally:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)

    def put_file(self, sha256: str, path: Path) -> int:
        """Copy a local file into the store (through a temporary file, so never half-written)."""
        dest = self.path(sha256)
        size = path.stat().st_size
        if path.resolve() == dest.resolve() or dest.is_file():
            return size
        self._check_room(size)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out, path.open("rb") as src:
                while block := src.read(1 << 20):
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
            self._account(size)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return size

    def open(self, sha256: str) -> Generator[bytes, None, None] | None:
        return self.read(sha256) if self.exists(sha256) else None

    def read(self, sha256: str, chunk: int = 1 << 20) -> Generator[bytes, None, None]:
        with self.path(sha256).open("rb") as fh:
            while block := fh.read(chunk):
                yield block

    def sweep_uploads(self, older_than: float, now: float | None = None) -> Swept:
        """Delete the temporary files of uploads (``.upload-*``) and of stored query results being
        written (``.tmp/``) whose last write is more than ``older_than`` seconds before ``now``. A
        file still being written is touched by every write, so an age above the longest pause between
        two writes (the body-read timeout, a query's timeout) never removes one in progress."""
        cutoff = (time.time() if now is None else now) - older_than
        removed = size = kept = 0
        for path in [*self.root.glob(".upload-*"), *(self.root / ".tmp").glob("*")]:
            try:
                st = path.stat()
                if not path.is_file():
                    continue
                if st.st_mtime >= cutoff:
                    kept += 1
                    continue
                path.unlink()
            except FileNotFoundError:  # finished (moved into place) or removed meanwhile
                continue
            removed += 1
            size += st.st_size
        return Swept(removed=removed, bytes=size, kept=kept)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()
