"""Staged outputs of a run: Parquet files under ``<warehouse>/_staging/<run_id>/`` that the publish
phase commits to Iceberg. Local folders and ``s3://`` warehouses go through pyarrow's filesystems."""

from __future__ import annotations

import os
import re
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lakehouse.settings import Settings

_TABLE = re.compile(r"^(bronze|silver|gold)\.[a-z_][a-z0-9_]*$")


def _fs(settings: Settings) -> tuple[pafs.FileSystem, str]:
    warehouse = settings.warehouse
    if warehouse.startswith("s3://") or warehouse.startswith("s3a://"):
        from lakehouse.lake.catalog import storage_properties

        props = storage_properties(warehouse, settings)
        fs = pafs.S3FileSystem(
            endpoint_override=props.get("s3.endpoint"), access_key=props.get("s3.access-key-id"),
            secret_key=props.get("s3.secret-access-key"), session_token=props.get("s3.session-token"),
            region=props.get("s3.region") or "us-east-1",
            scheme="http" if str(props.get("s3.endpoint", "")).startswith("http://") else "https",
        )
        return fs, warehouse.split("://", 1)[1].rstrip("/")
    os.makedirs(warehouse, exist_ok=True)
    return pafs.LocalFileSystem(), os.path.abspath(warehouse)


def staged_path(settings: Settings, run_id: str, table: str) -> str:
    if not _TABLE.match(table):
        raise ValueError(f"bad table name {table!r}")
    _, root = _fs(settings)
    return f"{root}/_staging/{run_id}/{table}.parquet"


def write(settings: Settings, run_id: str, table: str, data: pa.Table) -> str:
    fs, _ = _fs(settings)
    path = staged_path(settings, run_id, table)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    tmp = path + ".tmp"
    with fs.open_output_stream(tmp) as out:
        pq.write_table(data, out, compression="zstd")
    fs.move(tmp, path)
    return path


def read(settings: Settings, path: str) -> pa.Table:
    fs, _ = _fs(settings)
    with fs.open_input_file(path) as f:
        return pq.read_table(f)


def clear(settings: Settings, run_id: str) -> None:
    fs, root = _fs(settings)
    try:
        fs.delete_dir(f"{root}/_staging/{run_id}")
    except (FileNotFoundError, OSError):
        pass


def expand(value: str, env: dict[str, str] | None = None) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` (nested once) from the environment."""
    env = dict(os.environ if env is None else env)

    def sub(m: re.Match[str]) -> str:
        name, _, default = m.group(1).partition(":-")
        return env.get(name) or expand(default, env)

    previous = None
    while previous != value:
        previous, value = value, re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*(?::-[^{}]*)?)\}", sub, value)
    return value


_SOURCE_VARS = re.compile(r"^LAKEHOUSE_(HOME|ODOO_URL|SOURCE_[A-Z0-9_]+)$")


def source_url(settings: Settings, value: str, env: dict[str, str] | None = None) -> str:
    """A pipeline source URL with ``${VAR}`` expanded — only ``LAKEHOUSE_HOME``, ``LAKEHOUSE_ODOO_URL``
    and ``LAKEHOUSE_SOURCE_*`` (a spec must not read ``${LAKEHOUSE_DATABASE_URL}`` or a key into a
    URL) — and checked like a connection: never the control plane's own metadata database; a SQLite
    file only inside ``LAKEHOUSE_SQLITE_SOURCE_DIRS`` (default ``$LAKEHOUSE_HOME/sources`` and
    ``/demo``); a network host only inside ``LAKEHOUSE_EGRESS_ALLOW``. Raises ``ValueError``."""
    from urllib.parse import urlsplit

    from lakehouse.connectors.errors import SourceError
    from lakehouse.connectors.netpolicy import EgressPolicy, check_sqlite_path

    source_env = {k: v for k, v in (os.environ if env is None else env).items() if _SOURCE_VARS.match(k)}
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", value):
        if not _SOURCE_VARS.match(name):
            raise ValueError(f"source URLs may use ${{LAKEHOUSE_HOME}}, ${{LAKEHOUSE_ODOO_URL}} and "
                             f"${{LAKEHOUSE_SOURCE_*}} only, not ${{{name}}}")
    url = expand(value, source_env)
    # a worker is not told the metadata database (its default is the SQLite file of its home); the
    # server refuses it when handing a connection (services/lease_secrets.py)
    if same_database(url, settings.database_url):
        raise ValueError("a pipeline may not read the control plane's metadata database")
    try:
        if url.startswith("sqlite:"):
            path = url.split(":///", 1)[-1].split("?", 1)[0]
            dirs = list(settings.sqlite_source_dirs) or [settings.home / "sources", settings.home / "demo"]
            check_sqlite_path(path, dirs)
        else:
            parts = urlsplit(url)
            if parts.hostname:
                EgressPolicy.parse(settings.egress_allow).check(parts.hostname, parts.port or 5432)
    except SourceError as exc:
        raise ValueError(str(exc)) from None
    return url


def same_database(url: str, database_url: str) -> bool:
    from lakehouse.lake.catalog import same_database as same

    return same(url, database_url)


def manifest_entry(path: str, data: pa.Table, content_hash: str, **extra: Any) -> dict[str, Any]:
    return {"staged": path, "rows": data.num_rows, "content_hash": content_hash,
            "columns": data.column_names, **extra}
