"""Staged outputs of a run: Parquet files that the publish phase commits to Iceberg, under
``<warehouse>/_staging/<workspace>/<environment>/<run_id>/`` — the run's workspace and environment
from the server's claim (lake/lease.py's :func:`~lakehouse.lake.lease.staging_prefix`), so that the
S3 credentials vended for a lease (services/storage_vending.py) cover its staging folder too. Local
folders and ``s3://`` warehouses go through pyarrow's filesystems.

Which credentials: a phase whose lease catalog holds vended credentials uses those (the worker then
needs no S3 key of its own); otherwise the worker's own storage settings, as for its tables.

A bare run id instead of the phase context names the layout before per-workspace staging
(``<warehouse>/_staging/<run_id>/``) with the worker's own settings: in-process callers, and runs
staged before an upgrade (the phases still accept that folder, pipeline_common.py)."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lakehouse.settings import Settings

if TYPE_CHECKING:
    from lakehouse.worker.context import PhaseContext

_TABLE = re.compile(r"^(bronze|silver|gold)\.[a-z_][a-z0-9_]*$")
_S3 = ("s3://", "s3a://")


def _is_s3(settings: Settings) -> bool:
    return settings.warehouse.startswith(_S3)


def phase_storage(run: PhaseContext | str) -> dict[str, str] | None:
    """The S3 properties vended for the phase's lease, or ``None`` (no lease catalog, or the control
    plane does not vend): then the worker's own settings apply."""
    if isinstance(run, str) or run.lake is None:
        return None
    vended = getattr(run.catalog, "vended_storage", None)
    return vended() if callable(vended) else None


def _fs(settings: Settings, props: dict[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """The warehouse's filesystem (with ``props``' credentials when given) and its root path."""
    warehouse = settings.warehouse
    if _is_s3(settings):
        from lakehouse.lake.catalog import storage_properties

        if props is None:
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


def filesystem(settings: Settings, run: PhaseContext | str) -> tuple[pafs.FileSystem, str]:
    """The filesystem a phase stages with (its lease's vended credentials if any) and the warehouse root."""
    return _fs(settings, phase_storage(run))


def folder(settings: Settings, run: PhaseContext | str) -> str:
    """The run's staging folder (no trailing slash), as a path of :func:`filesystem`."""
    from lakehouse.lake.lease import STAGING, staging_prefix

    warehouse = settings.warehouse
    root = warehouse.split("://", 1)[1].rstrip("/") if _is_s3(settings) else os.path.abspath(warehouse)
    if isinstance(run, str):
        return f"{root}/{STAGING}/{run}"
    return staging_prefix(root, run.workspace, run.environment) + run.run_id


def staged_path(settings: Settings, run: PhaseContext | str, table: str) -> str:
    if not _TABLE.match(table):
        raise ValueError(f"bad table name {table!r}")
    return f"{folder(settings, run)}/{table}.parquet"


def legacy_path(settings: Settings, run_id: str, table: str) -> str:
    """Where a run staged ``table`` before per-workspace staging (runs in flight over an upgrade)."""
    return staged_path(settings, run_id, table)


def write(settings: Settings, run: PhaseContext | str, table: str, data: pa.Table) -> str:
    fs, _ = filesystem(settings, run)
    path = staged_path(settings, run, table)
    if not _is_s3(settings):  # an S3 upload appears whole or not at all: no folder, no rename
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = path + ".tmp"
        with fs.open_output_stream(tmp) as out:
            pq.write_table(data, out, compression="zstd")
        fs.move(tmp, path)
        return path
    with fs.open_output_stream(path) as out:
        pq.write_table(data, out, compression="zstd")
    return path


def read(settings: Settings, path: str, run: PhaseContext | str | None = None) -> pa.Table:
    fs, _ = filesystem(settings, run) if run is not None else _fs(settings)
    with fs.open_input_file(path) as f:
        return pq.read_table(f)


def delete(settings: Settings, run: PhaseContext | str, paths: list[str]) -> None:
    """Remove staged files (what a failed engine staged), ignoring those already gone."""
    _delete(filesystem(settings, run)[0], paths)


def _delete(fs: pafs.FileSystem, paths: list[str]) -> None:
    for path in paths:
        try:
            fs.delete_file(path)
        except (FileNotFoundError, OSError):
            pass


def clear(settings: Settings, run: PhaseContext | str) -> None:
    """Remove the run's staging folder (and the old-layout one of runs staged before an upgrade)."""
    props = phase_storage(run)
    fs, _ = _fs(settings, props)
    folders = [folder(settings, run)]
    if not isinstance(run, str) and props is None:  # vended credentials do not reach the old folder
        folders.append(folder(settings, run.run_id))
    for path in folders:
        try:
            if _is_s3(settings):  # object by object: a batch delete is checked on the bucket by some stores
                found = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=True))
                _delete(fs, [f.path for f in found if f.type == pafs.FileType.File])
            else:
                fs.delete_dir(path)
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
