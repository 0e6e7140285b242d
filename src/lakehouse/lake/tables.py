"""Iceberg tables of the medallion layout: write (one atomic commit per publish), read, list, snapshots.

Every function takes a pyiceberg catalog and a table named by (layer, env, name[, workspace]); see
:mod:`lakehouse.lake.catalog` for the naming. The catalog is either the control plane's SQL catalog
(:func:`lakehouse.lake.catalog.catalog_for`, every workspace, store namespaces ``<ws>__<layer>_<env>``)
or a worker's lease catalog (:class:`lakehouse.lake.lease.LeaseCatalog`: the REST catalog of ONE
workspace, whose namespaces are the workspace's own names ``<layer>_<env>``; asking it for another
workspace's table is refused here, and by the server anyway).

Merges belong in DuckDB (pyiceberg's upsert is ~26x slower, docs/benchmarks.md): compute the new content there
and publish it with ``write_table(..., mode="overwrite")``. Tables are unpartitioned.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.lake.catalog import (
    DEFAULT_WORKSPACE,
    LAYERS,
    check_env,
    check_layer,
    check_table_name,
    namespace,
    parse_namespace,
)

Mode = Literal["overwrite", "append"]


class TableNotFound(LookupError):
    def __init__(self, table: str) -> None:
        super().__init__(f"lake table {table} does not exist")
        self.table = table


class WriteError(ValueError):
    """The data cannot be written to the table (incompatible schema, bad type); nothing was committed."""


@dataclass(frozen=True)
class WriteResult:
    table: str  # as SQL sees it: "bronze.account_move"
    identifier: str  # the Iceberg identifier: "bronze_dev.account_move"
    snapshot_id: int | None
    metadata_location: str
    rows: int
    created: bool
    added_columns: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "identifier": self.identifier, "snapshot_id": self.snapshot_id,
                "metadata_location": self.metadata_location, "rows": self.rows, "created": self.created,
                "added_columns": list(self.added_columns)}


@dataclass(frozen=True)
class TableRef:
    """A table as listed from the catalog (no metadata file read)."""

    workspace: str
    layer: str
    env: str
    name: str
    metadata_location: str

    @property
    def sql_name(self) -> str:
        return f"{self.layer}.{self.name}"

    @property
    def identifier(self) -> str:
        return f"{namespace(self.layer, self.env, self.workspace)}.{self.name}"

    @property
    def location(self) -> str:
        return table_location(self.metadata_location)


def table_location(metadata_location: str) -> str:
    """The table's root folder, from one of its metadata files."""
    return metadata_location.rsplit("/metadata/", 1)[0]


def identifier(layer: str, env: str, name: str, workspace: str = DEFAULT_WORKSPACE) -> tuple[str, str]:
    return namespace(layer, env, workspace), check_table_name(name)


def scoped_workspace(catalog: Any) -> str | None:
    """The one workspace a lease catalog serves; None for the control plane's catalog (all of them)."""
    ws = getattr(catalog, "workspace", None)
    return ws if isinstance(ws, str) else None


def catalog_identifier(catalog: Any, layer: str, env: str, name: str, workspace: str = DEFAULT_WORKSPACE
                       ) -> tuple[str, str]:
    """The identifier of a table in this catalog: the store's namespace for the control plane's
    catalog, the workspace's own namespace name for a lease catalog (which serves one workspace)."""
    scoped = scoped_workspace(catalog)
    if scoped is None:
        return identifier(layer, env, name, workspace)
    if workspace != scoped:
        raise PermissionError(f"this catalog serves workspace {scoped!r} only, not {workspace!r}")
    return f"{check_layer(layer)}_{check_env(env)}", check_table_name(name)


def load(catalog: Any, layer: str, env: str, name: str, workspace: str = DEFAULT_WORKSPACE) -> Any:
    """The pyiceberg ``Table``; :class:`TableNotFound` if it does not exist."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    ident = catalog_identifier(catalog, layer, env, name, workspace)
    try:
        return catalog.load_table(ident)
    except (NoSuchTableError, NoSuchNamespaceError):
        raise TableNotFound(f"{layer}.{name} ({'.'.join(ident)})") from None


def table_exists(catalog: Any, layer: str, env: str, name: str, workspace: str = DEFAULT_WORKSPACE) -> bool:
    return bool(catalog.table_exists(catalog_identifier(catalog, layer, env, name, workspace)))


def ensure_namespaces(catalog: Any, env: str, workspace: str = DEFAULT_WORKSPACE) -> None:
    if scoped_workspace(catalog) is not None:
        return  # the REST catalog's medallion namespaces always exist
    for layer in LAYERS:
        catalog.create_namespace_if_not_exists(namespace(layer, env, workspace))


# --- writing ------------------------------------------------------------------------------------


def write_table(catalog: Any, layer: str, env: str, name: str, data: pa.Table | pa.RecordBatchReader,
                mode: Mode = "overwrite", snapshot_properties: Mapping[str, Any] | None = None, *,
                workspace: str = DEFAULT_WORKSPACE, retries: int = 3) -> WriteResult:
    """Publish ``data`` to a table in ONE Iceberg commit.

    * The table is created if missing (create + data in one commit, so no empty table is ever visible).
    * ``overwrite`` replaces every row; ``append`` adds rows.
    * Columns the table lacks are added (union by name) in the same commit; existing columns may be
      widened (int→long, float→double, decimal precision). An incompatible change (string→int, …)
      raises :class:`WriteError` and commits nothing. Columns missing from ``data`` stay, as nulls.
    * Readers see the previous snapshot until the commit succeeds; if anything fails before it
      (bad data, an exception from a ``RecordBatchReader``, a storage error), the table is unchanged.
    * ``data`` may be a ``pyarrow.Table`` or a ``RecordBatchReader`` (streamed in bounded memory; not
      retried on a concurrent-commit conflict since it cannot be replayed).
    * Arrow types Iceberg lacks are converted first: ns timestamps → µs, non-UTC zones → UTC, unsigned
      and small ints widened, dictionaries decoded, ``null`` columns → string, views → plain types.
    """
    from pyiceberg.exceptions import CommitFailedException, TableAlreadyExistsError

    from lakehouse.store.types_public import IntegrityError

    if mode not in ("overwrite", "append"):
        raise ValueError("mode must be 'overwrite' or 'append'")
    ident = catalog_identifier(catalog, layer, env, name, workspace)
    ns, tname = identifier(layer, env, name, workspace)  # as reported: the store's name, whatever the catalog
    props = {str(k): str(v) for k, v in (snapshot_properties or {}).items()}
    streaming = isinstance(data, pa.RecordBatchReader)
    attempts = 1 if streaming else max(1, retries)
    last: Exception | None = None
    for _ in range(attempts):
        prepared, counter = _prepare(data)
        try:
            result = _write_once(catalog, ident, prepared, mode, props)
        except (CommitFailedException, TableAlreadyExistsError, IntegrityError) as exc:  # a concurrent writer won
            last = exc
            continue
        return WriteResult(table=f"{layer}.{tname}", identifier=f"{ns}.{tname}", snapshot_id=result[0],
                           metadata_location=result[1], rows=counter.rows, created=result[2],
                           added_columns=result[3])
    assert last is not None
    raise last


@dataclass
class _Counter:
    rows: int = 0


def _prepare(data: pa.Table | pa.RecordBatchReader) -> tuple[pa.Table | pa.RecordBatchReader, _Counter]:
    counter = _Counter()
    schema = iceberg_compatible_schema(data.schema)
    if isinstance(data, pa.Table):
        table = cast_table(data, schema)
        counter.rows = table.num_rows
        return table, counter

    reader = data

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            out = cast_table(pa.Table.from_batches([batch]), schema).combine_chunks().to_batches()
            for b in out:
                counter.rows += b.num_rows
                yield b

    return pa.RecordBatchReader.from_batches(schema, batches()), counter


def _write_once(catalog: Any, ident: tuple[str, str], data: pa.Table | pa.RecordBatchReader, mode: Mode,
                props: dict[str, str]) -> tuple[int | None, str, bool, list[str]]:
    from pyiceberg.exceptions import NoSuchTableError

    try:
        table = catalog.load_table(ident)
    except NoSuchTableError:
        if scoped_workspace(catalog) is None:  # the REST catalog's medallion namespaces always exist
            catalog.create_namespace_if_not_exists(ident[0])
        txn = catalog.create_table_transaction(ident, schema=data.schema)
        _guard(lambda: txn.append(data, snapshot_properties=props))  # a new table: append == overwrite
        created = txn.commit_transaction()
        return created.metadata.current_snapshot_id, created.metadata_location, True, []
    before = {f.name for f in table.schema().fields}
    txn = table.transaction()
    added = [f.name for f in data.schema if f.name not in before]

    def run() -> None:
        with txn.update_schema() as update:  # adds columns, widens types; a no-op when nothing changes
            update.union_by_name(data.schema)
        if mode == "overwrite" and _has_data(txn.table_metadata):
            txn.overwrite(data, snapshot_properties=props)
        else:  # appending, or overwriting a table with no data files (same result, no "no match" warning)
            txn.append(data, snapshot_properties=props)

    _guard(run)
    txn.commit_transaction()
    return table.metadata.current_snapshot_id, table.metadata_location, False, added


def _guard(fn: Any) -> None:
    """Turn pyiceberg's schema/type complaints into :class:`WriteError` (nothing is committed)."""
    from pyiceberg.exceptions import ValidationError

    try:
        fn()
    except WriteError:
        raise
    except (ValidationError, ValueError) as exc:  # ArrowInvalid is a ValueError too
        raise WriteError(str(exc)) from exc


def _has_data(metadata: Any) -> bool:
    snap = metadata.current_snapshot()
    if snap is None:
        return False
    files = snap.summary["total-data-files"] if snap.summary is not None else None
    return files is None or int(files) > 0


# --- arrow types Iceberg can hold ---------------------------------------------------------------


def _iceberg_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(t):
        return _iceberg_type(t.value_type)
    if pa.types.is_null(t):
        return pa.string()
    if pa.types.is_timestamp(t):
        tz = "UTC" if t.tz else None
        return pa.timestamp("us", tz=tz)
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_time(t):
        return pa.time64("us")
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t) or pa.types.is_uint16(t):
        return pa.int32()
    if pa.types.is_uint32(t) or pa.types.is_uint64(t):
        return pa.int64()
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_string_view(t):
        return pa.large_string()
    if pa.types.is_binary_view(t):
        return pa.large_binary()
    if pa.types.is_decimal(t) and t.bit_width == 256 and t.precision <= 38:
        return pa.decimal128(t.precision, t.scale)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return pa.large_list(_field(t.value_field))
    if pa.types.is_fixed_size_list(t):
        return pa.large_list(_field(t.value_field))
    if pa.types.is_map(t):
        return pa.map_(_iceberg_type(t.key_type), _field(t.item_field))
    if pa.types.is_struct(t):
        return pa.struct([_field(t.field(i)) for i in range(t.num_fields)])
    return t


def _field(f: pa.Field) -> pa.Field:
    return pa.field(f.name, _iceberg_type(f.type), nullable=True, metadata=f.metadata)


def iceberg_compatible_schema(schema: pa.Schema) -> pa.Schema:
    """The Arrow schema ``write_table`` writes: Iceberg-representable types, every column optional."""
    names = schema.names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise WriteError(f"duplicate column names: {', '.join(dupes)}")
    return pa.schema([_field(f) for f in schema])


def _has_ns(t: pa.DataType) -> bool:
    if pa.types.is_timestamp(t) or pa.types.is_time64(t):
        return bool(t.unit == "ns")
    if pa.types.is_dictionary(t):
        return _has_ns(t.value_type)
    return any(_has_ns(t.field(i).type) for i in range(t.num_fields)) if t.num_fields else False


def cast_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    if table.schema.equals(schema, check_metadata=False):
        return table
    cols = []
    for f, col in zip(schema, table.columns, strict=True):
        if col.type == f.type:
            cols.append(col)
            continue
        try:
            cols.append(pc.cast(col, f.type, safe=not _has_ns(col.type)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise WriteError(f"column {f.name!r}: cannot convert {col.type} to {f.type}: {exc}") from exc
    return pa.Table.from_arrays(cols, schema=schema)


# --- reading ------------------------------------------------------------------------------------


def read_table(catalog: Any, layer: str, env: str, name: str, *, snapshot_id: int | None = None,
               columns: Sequence[str] | None = None, row_filter: str | None = None, limit: int | None = None,
               workspace: str = DEFAULT_WORKSPACE) -> pa.Table:
    """Rows of a table, at its current snapshot or at ``snapshot_id`` (time travel)."""
    table = load(catalog, layer, env, name, workspace)
    if snapshot_id is not None and table.metadata.snapshot_by_id(snapshot_id) is None:
        raise LookupError(f"{layer}.{name} has no snapshot {snapshot_id}")
    kwargs: dict[str, Any] = {"snapshot_id": snapshot_id, "limit": limit}
    if columns:
        kwargs["selected_fields"] = tuple(columns)
    if row_filter:
        kwargs["row_filter"] = row_filter
    if table.metadata.current_snapshot() is None and snapshot_id is None:
        from pyiceberg.io.pyarrow import schema_to_pyarrow

        empty = schema_to_pyarrow(table.schema()).empty_table()
        return empty.select(list(columns)) if columns else empty
    return table.scan(**kwargs).to_arrow()


def list_tables(catalog: Any, env: str | None = None, layer: str | None = None,
                workspace: str | None = DEFAULT_WORKSPACE) -> list[TableRef]:
    """Tables of the medallion namespaces, read with one catalog query (no metadata file is read).
    ``None`` for env/layer/workspace means every one (a lease catalog: every one it may see)."""
    if env is not None:
        check_env(env)
    if layer is not None:
        check_layer(layer)
    scoped = scoped_workspace(catalog)
    if scoped is not None:
        if workspace is not None and workspace != scoped:
            return []
        refs = [TableRef(scoped, lay, e, tname, loc) for lay, e, tname, loc in catalog.medallion_tables(env, layer)]
        refs.sort(key=lambda r: (LAYERS.index(r.layer), r.env, r.name))
        return refs
    from lakehouse.store import iceberg_catalog

    with catalog.engine.connect() as conn:
        rows = iceberg_catalog.all_tables(conn, catalog.name, getattr(catalog, "_schema_version", "v1") == "v1")
    out = []
    for ns, tname, loc in rows:
        parts = parse_namespace(ns)
        if parts is None or loc is None:
            continue
        if (env and parts.env != env) or (layer and parts.layer != layer) or (
                workspace is not None and parts.workspace != workspace):
            continue
        out.append(TableRef(parts.workspace, parts.layer, parts.env, tname, loc))
    out.sort(key=lambda r: (r.workspace, LAYERS.index(r.layer), r.env, r.name))
    return out


def current_metadata_location(catalog: Any, layer: str, env: str, name: str,
                              workspace: str = DEFAULT_WORKSPACE) -> str:
    """The metadata file of the current snapshot (what ``iceberg_scan`` needs: pyiceberg writes no
    version-hint)."""
    return str(load(catalog, layer, env, name, workspace).metadata_location)


def snapshots(catalog: Any, layer: str, env: str, name: str, workspace: str = DEFAULT_WORKSPACE
              ) -> list[dict[str, Any]]:
    """Every snapshot of the table, oldest first: id, parent, time, operation, summary, current."""
    table = load(catalog, layer, env, name, workspace)
    return snapshot_list(table.metadata)


def snapshot_list(metadata: Any) -> list[dict[str, Any]]:
    current = metadata.current_snapshot_id
    out = []
    for s in sorted(metadata.snapshots, key=lambda s: (s.timestamp_ms, s.sequence_number or 0)):
        summary = dict(s.summary.additional_properties) if s.summary is not None else {}
        out.append({
            "snapshot_id": s.snapshot_id,
            "parent_id": s.parent_snapshot_id,
            "timestamp": datetime.fromtimestamp(s.timestamp_ms / 1000, UTC),
            "operation": s.summary.operation.value if s.summary is not None else None,
            "summary": summary,
            "current": s.snapshot_id == current,
        })
    return out


def row_count(metadata: Any) -> int:
    """Rows of the current snapshot, from its summary (0 for a table without snapshots)."""
    snap = metadata.current_snapshot()
    if snap is None:
        return 0
    total = snap.summary["total-records"] if snap.summary is not None else None
    return int(total) if total is not None else -1


def drop_table(catalog: Any, layer: str, env: str, name: str, workspace: str = DEFAULT_WORKSPACE) -> None:
    from pyiceberg.exceptions import NoSuchTableError

    try:
        catalog.drop_table(catalog_identifier(catalog, layer, env, name, workspace))
    except NoSuchTableError:
        raise TableNotFound(f"{layer}.{name}") from None
