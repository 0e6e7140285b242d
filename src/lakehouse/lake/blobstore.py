"""Content-addressed blob store under ``LAKEHOUSE_HOME/artifacts`` (one file per sha256).

An upload is written to a temporary file in the store and moved into place only once complete and
its sha256 checked: a cut-off, refused or stalled upload leaves neither a blob nor its temporary file.
A full disk, or a store past its optional capacity, raises :class:`StoreFull` naming the store.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path


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

    def read(self, sha256: str, chunk: int = 1 << 20) -> Iterator[bytes]:
        with self.path(sha256).open("rb") as fh:
            while block := fh.read(chunk):
                yield block


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()
