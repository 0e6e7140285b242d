"""Synchronous helpers over the content-addressed blob store (``lakehouse.lake.blobstore``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lakehouse.lake.blobstore import BlobStore, sha256_file


def temp_path(store: BlobStore, suffix: str = "") -> Path:
    """A fresh temporary file name inside the store (same file system, so :func:`put_file` can move it)."""
    tmp_dir = store.root / ".tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="blob-", suffix=suffix)
    os.close(fd)
    return Path(name)


def put_file(store: BlobStore, path: Path, *, move: bool = True) -> tuple[str, int]:
    """Store a file under its sha256; returns (sha256, size). The same content is stored once.
    With ``move`` the file is moved into place (or removed when the content is already stored)."""
    sha = sha256_file(path)
    size = path.stat().st_size
    dest = store.path(sha)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if move:
            path.unlink()
        return sha, size
    if move:
        os.replace(path, dest)
    else:
        tmp = temp_path(store)
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)
    return sha, size
