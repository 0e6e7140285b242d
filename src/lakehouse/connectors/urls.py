"""Parse the source URLs the connectors accept.

- ``postgresql://user:pw@host:port/db`` (also ``postgresql+psycopg://``, ``postgres://``): a libpq URI.
- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's spelling).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from lakehouse.connectors.errors import SourceError

_PG_SCHEME = re.compile(r"^(postgresql|postgres)(\+[a-z0-9_]+)?$")


@dataclass(frozen=True)
class SourceUrl:
    kind: Literal["postgres", "sqlite"]
    conninfo: str  # libpq URI for PostgreSQL, the file path for SQLite
    path: Path | None = None

    @property
    def display(self) -> str:
        """The URL without its password, for messages."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}"
        parts = urlsplit(self.conninfo)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        if parts.username:
            netloc = f"{parts.username}@{netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    @property
    def dbname(self) -> str:
        if self.kind == "sqlite":
            return str(self.path)
        return urlsplit(self.conninfo).path.lstrip("/")

    def with_dbname(self, dbname: str) -> SourceUrl:
        """The same PostgreSQL server, another database (used to create a missing one)."""
        parts = urlsplit(self.conninfo)
        return SourceUrl("postgres", urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, "")))


def parse_url(url: str) -> SourceUrl:
    """Parse ``url``; raise ``SourceError`` for an unsupported or malformed one."""
    if not isinstance(url, str) or "://" not in url:
        raise SourceError(f"unsupported source URL {url!r}: expected postgresql://… or sqlite:///…")
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/") or rest in ("/", "/:memory:"):
            raise SourceError("a SQLite source URL needs a file path: sqlite:///path/to/file.db")
        path = Path(rest[1:].split("?", 1)[0])
        return SourceUrl("sqlite", str(path), path)
    if _PG_SCHEME.match(scheme):
        parts = urlsplit("postgresql://" + rest)
        if not parts.path.strip("/"):
            raise SourceError("a PostgreSQL source URL needs a database name: postgresql://host/dbname")
        return SourceUrl("postgres", "postgresql://" + rest)
    raise SourceError(f"unsupported source URL scheme {scheme!r}: expected postgresql://… or sqlite:///…")
