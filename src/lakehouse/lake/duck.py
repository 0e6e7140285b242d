"""DuckDB over the lake: every Iceberg table of one environment as ``bronze.x`` / ``silver.x`` / ``gold.x``.

``connect(catalog, env="dev")`` opens an in-memory DuckDB with the ``iceberg`` (and, for S3, ``httpfs``)
extension loaded from the ``duckdb-extension-*`` wheels (no download), creates the schemas ``bronze``,
``silver`` and ``gold`` and, in them, one view per table over ``iceberg_scan('<metadata.json>')`` —
pinned to the metadata file that was current when the connection was opened (pyiceberg writes no
version-hint, so the catalog gives the file). A connection therefore reads one consistent set of
snapshots, whatever commits meanwhile.

Time travel (SQL):

* ``SELECT * FROM at_snapshot('bronze.orders', 4242424242)`` — the table at a snapshot id;
* ``SELECT * FROM table_snapshots('bronze.orders')`` — its snapshots (``sequence_number,
  snapshot_id, timestamp_ms, manifest_list``), to find the id.

``LakeConnection.reads(sql)`` tells which tables and snapshot ids a SELECT reads (views at their
pinned snapshot, ``at_snapshot`` at the given id).

``sandbox=True`` (what the SQL service uses) turns off every file access but to the table folders of
this environment (``enable_external_access = false`` + ``allowed_directories``) and locks the
configuration: ``read_csv('/etc/passwd')``, other environments' or workspaces' files, ``SET`` … fail.
DuckDB lets a connection read its own ``temp_directory`` whatever the sandbox says, so a sandboxed
connection spills into a folder of its own (``<temp_root>/q-<random>/spill``, mode 0700), removed by
:meth:`LakeConnection.close`: no other connection's spill files are within its reach.
``memory_limit_mb`` caps the memory of the connection (DuckDB spills, then fails, beyond it).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from lakehouse.lake.catalog import DEFAULT_WORKSPACE, LAYERS, check_env, duckdb_s3_secret
from lakehouse.lake.tables import TableRef, list_tables

_CATALOG_QUERY = re.compile(r"\b(show|describe|information_schema|duckdb_\w+|pragma_\w+)\b", re.IGNORECASE)


class ExtensionMissing(RuntimeError):
    pass


def extension_path(name: str) -> Path | None:
    """The extension file shipped by the ``duckdb-extension-<name>`` wheel for this DuckDB version."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
        if path.is_file():
            return path
    return None


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load a DuckDB extension offline: the file of the ``duckdb-extension-<name>`` wheel, else the
    ``duckdb_extensions.import_extension`` helper when installed, else an extension already installed
    in DuckDB's home. Never downloads."""
    path = extension_path(name)
    try:
        if path is not None:
            con.execute(f"LOAD '{path.as_posix()}'")
            return
        try:
            helper = importlib.import_module("duckdb_extensions")
        except ImportError:
            helper = None
        if helper is not None and hasattr(helper, "import_extension"):
            helper.import_extension(name, con=con)
        con.execute(f"LOAD {name}")
    except duckdb.Error as exc:
        raise ExtensionMissing(
            f"DuckDB extension {name!r} is not available offline; install duckdb-extension-{name}=="
            f"{duckdb.__version__}") from exc


_verified: dict[str, tuple[float, int]] = {}
_verify_lock = threading.Lock()
_BASE_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def _verified_paths(names: Sequence[str]) -> dict[str, Path | None]:
    """The wheels' extension files, once DuckDB has checked their signatures in this process (checking
    costs ~0.2-0.5 s a load here, so it is done once per file and process, not per connection)."""
    paths = {name: extension_path(name) for name in names}
    stats = {str(p): (p.stat().st_mtime, p.stat().st_size) for p in paths.values() if p is not None}
    with _verify_lock:
        if any(_verified.get(k) != v for k, v in stats.items()):
            probe = duckdb.connect(config=dict(_BASE_CONFIG))
            try:
                for path in paths.values():  # in order: iceberg needs avro loaded first
                    if path is not None:
                        probe.execute(f"LOAD '{path.as_posix()}'")  # the signature is verified here
            finally:
                probe.close()
            _verified.update(stats)
    return paths


def new_connection(*extensions: str) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory DuckDB with some extensions loaded (in order), offline, no autoloading."""
    paths = _verified_paths(extensions)
    con = duckdb.connect(config={**_BASE_CONFIG, "allow_unsigned_extensions": all(paths.values())})
    try:
        for name, path in paths.items():
            if path is not None:
                con.execute(f"LOAD '{path.as_posix()}'")
            else:
                load_extension(con, name)
    except BaseException:
        con.close()
        raise
    return con


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class LakeConnection:
    """A DuckDB connection with the lake's views; use as a context manager or call :meth:`close`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, catalog: Any, env: str, workspace: str,
                 tables: dict[str, TableRef], temp_dir: Path | None = None) -> None:
        self.con = con
        self.temp_dir = temp_dir  # this connection's private spill folder, removed on close
        self.catalog = catalog
        self.env = env
        self.workspace = workspace
        self.tables = tables  # every lake table of the environment, by SQL name ("bronze.x")
        self.views: set[str] = set()
        self._snapshot_ids: dict[str, int | None] = {}

    # -- views ---------------------------------------------------------------------------------

    def ensure_views(self, names: Iterable[str] | None = None) -> list[str]:
        """Create the views of some tables (by SQL name) or of all; returns the names created."""
        wanted = self.tables.keys() if names is None else [n.lower() for n in names]
        created = []
        for name in wanted:
            ref = self.tables.get(name)
            if ref is None or name in self.views:
                continue
            self.con.execute(f"CREATE OR REPLACE VIEW {_ident(ref.layer)}.{_ident(ref.name)} AS "
                             f"SELECT * FROM iceberg_scan({_lit(ref.metadata_location)})")
            self.views.add(name)
            created.append(name)
        return created

    def prepare(self, sql: str) -> None:
        """Create the views a SELECT needs (all of them for SHOW / DESCRIBE / information_schema)."""
        if _CATALOG_QUERY.search(sql):
            self.ensure_views()
            return
        try:
            tree = parse_select(self.con, sql)
        except ValueError:
            self.ensure_views()
            return
        self.ensure_views([t for t, _ in _references(tree) if t in self.tables])

    # -- what a query reads --------------------------------------------------------------------

    def reads(self, sql: str) -> list[dict[str, Any]]:
        """``[{"table": "bronze.x", "snapshot_id": n}, …]`` read by a SELECT, sorted, without repeats."""
        try:
            tree = parse_select(self.con, sql)
        except ValueError:
            return []
        found: set[tuple[str, int | None]] = set()
        for table, snap in _references(tree):
            if table not in self.tables:
                continue
            found.add((table, snap if snap is not None else self.pinned_snapshot_id(table)))
        return [{"table": t, "snapshot_id": s} for t, s in sorted(found, key=lambda x: (x[0], x[1] or 0))]

    def pinned_snapshot_id(self, name: str) -> int | None:
        """The current snapshot id in the metadata file this connection reads for a table."""
        if name not in self._snapshot_ids:
            from pyiceberg.io import load_file_io
            from pyiceberg.serializers import FromInputFile

            loc = self.tables[name].metadata_location
            io = load_file_io(self.catalog.properties, loc)
            self._snapshot_ids[name] = FromInputFile.table_metadata(io.new_input(loc)).current_snapshot_id
        return self._snapshot_ids[name]

    # -- plumbing ------------------------------------------------------------------------------

    def sql(self, query: str, params: Any = None) -> Any:
        self.prepare(query)
        return self.con.sql(query, params=params)

    def execute(self, query: str, params: Any = None) -> duckdb.DuckDBPyConnection:
        self.prepare(query)
        return self.con.execute(query, params)

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            if self.temp_dir is not None:
                shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(catalog: Any, env: str = "dev", *, workspace: str = DEFAULT_WORKSPACE,
            views: bool | Iterable[str] = True, sandbox: bool = False, threads: int | None = None,
            memory_limit_mb: int | None = None, temp_root: Path | None = None) -> LakeConnection:
    """A DuckDB connection where the tables of ``env`` are ``bronze.x`` / ``silver.x`` / ``gold.x``.

    ``views``: True creates every view now, False none (call ``prepare(sql)`` / ``ensure_views``
    later — each view reads its table's metadata when created), or a list of SQL names.
    ``sandbox``: no file access beyond the environment's table folders; configuration locked; spills
    go to a private folder made under ``temp_root`` (default: the system's temp folder) for this
    connection only. ``memory_limit_mb``: DuckDB's memory limit for this connection.
    """
    check_env(env)
    refs = {r.sql_name: r for r in list_tables(catalog, env=env, workspace=workspace)}
    props = dict(catalog.properties)
    remote = str(props.get("warehouse", "")).startswith("s3") or any(
        r.metadata_location.startswith("s3") for r in refs.values())
    con = new_connection("avro", "iceberg", *(["httpfs"] if remote else []))
    temp_dir = private_temp_dir(temp_root) if sandbox else None
    try:
        con.execute("SET TimeZone = 'UTC'")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        if memory_limit_mb:
            con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
        if temp_dir is not None:
            con.execute(f"SET temp_directory = {_lit((temp_dir / 'spill').as_posix())}")
        secret = duckdb_s3_secret(props)
        if remote and secret:
            con.execute(secret)
        for layer in LAYERS:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(layer)}")
        _create_macros(con, refs)
        if sandbox:
            allowed = sorted({_dir(r.location) for r in refs.values()})
            con.execute(f"SET allowed_directories = [{', '.join(_lit(a) for a in allowed)}]")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    lake = LakeConnection(con, catalog, env, workspace, refs, temp_dir)
    try:
        if views is True:
            lake.ensure_views()
        elif views:
            lake.ensure_views(views)
    except BaseException:
        lake.close()
        raise
    return lake


def private_temp_dir(root: Path | None = None) -> Path:
    """A new folder only this process can enter (0700), under ``root`` or the system's temp folder."""
    base = Path(root) if root is not None else Path(tempfile.gettempdir()) / "lakehouse-duckdb"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    return Path(tempfile.mkdtemp(prefix="q-", dir=base))


def _dir(location: str) -> str:
    return location.rstrip("/") + "/"


def _create_macros(con: duckdb.DuckDBPyConnection, refs: dict[str, TableRef]) -> None:
    if refs:
        entries = ", ".join(f"{_lit(name)}: {_lit(r.metadata_location)}" for name, r in sorted(refs.items()))
        location = (f"coalesce(map_extract(MAP {{{entries}}}, lower(name))[1], "
                    f"error('no lake table ' || name || ' in this environment'))")
    else:
        location = "CAST(error('no lake table ' || name || ' in this environment') AS VARCHAR)"
    con.execute(f"CREATE OR REPLACE MACRO at_snapshot(name, snapshot_id) AS TABLE "
                f"SELECT * FROM iceberg_scan({location}, snapshot_from_id => snapshot_id)")
    con.execute(f"CREATE OR REPLACE MACRO table_snapshots(name) AS TABLE SELECT * FROM iceberg_snapshots({location})")


# --- parsing ------------------------------------------------------------------------------------


def parse_select(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """DuckDB's parse tree of a single SELECT (``json_serialize_sql``); ValueError otherwise."""
    row = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    tree = json.loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        raise ValueError(tree.get("error_message") or "not a SELECT statement")
    return tree


def _references(node: Any) -> Iterable[tuple[str, int | None]]:
    """(sql name, snapshot id or None) for every lake table a parse tree reads."""
    if isinstance(node, list):
        for item in node:
            yield from _references(item)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "BASE_TABLE" and str(node.get("schema_name", "")).lower() in LAYERS and \
            str(node.get("catalog_name", "")).lower() in ("", "memory"):
        yield f"{node['schema_name'].lower()}.{str(node.get('table_name', '')).lower()}", None
    elif kind == "TABLE_FUNCTION":
        fn = node.get("function") or {}
        if str(fn.get("function_name", "")).lower() == "at_snapshot":
            args = [_constant(c) for c in fn.get("children", [])]
            if len(args) == 2 and isinstance(args[0], str):
                snap = args[1]
                yield args[0].lower(), int(snap) if isinstance(snap, int | str) and str(snap).lstrip("-").isdigit() \
                    else None
    for value in node.values():
        if isinstance(value, dict | list):
            yield from _references(value)


def _constant(node: Any) -> Any:
    if not isinstance(node, dict):
        return None
    if node.get("class") == "CONSTANT":
        value = node.get("value", {})
        if value.get("is_null"):
            return None
        v = value.get("value")
        if isinstance(v, dict) and {"upper", "lower"} <= v.keys():  # HUGEINT
            return (int(v["upper"]) << 64) + int(v["lower"])
        return v
    if node.get("class") == "CAST":
        return _constant(node.get("child"))
    return None
