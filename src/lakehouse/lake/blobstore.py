"""Content-addressed blob store under ``LAKEHOUSE_HOME/artifacts`` (one file per sha256)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path


class HashMismatch(ValueError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"content sha256 is {actual}, not {expected}")
        self.expected = expected
        self.actual = actual


class TooBig(ValueError):
    pass


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def uri(self, sha256: str) -> str:
        return self.path(sha256).as_uri()

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    async def put_stream(self, sha256: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        """Write a stream, verify its sha256 and move it into place; returns its size."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooBig(f"artifact is larger than {max_bytes} bytes")
                    digest.update(chunk)
                    fh.write(chunk)
            actual = digest.hexdigest()
            if actual != sha256:
                raise HashMismatch(sha256, actual)
            dest = self.path(sha256)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                os.unlink(tmp)
            else:
                os.replace(tmp, dest)
            return size
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

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
