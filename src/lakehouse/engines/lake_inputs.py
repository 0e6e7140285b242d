"""What an engine reads: the tables of the run's workspace and environment, each pinned to its current
Iceberg snapshot — the Parquet data files of that snapshot from pyiceberg's scan plan (Spark reads
them directly, no Iceberg runtime needed) or the metadata file of that snapshot (DuckDB's
``iceberg_scan``, what dbt-duckdb reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lakehouse.lake import tables as lake_tables


@dataclass
class SnapshotInput:
    table: str  # "silver.journal_lines"
    snapshot_id: int | None
    metadata_location: str
    files: list[str] = field(default_factory=list)  # Parquet data files (URIs) of the snapshot

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "snapshot_id": self.snapshot_id, "files": list(self.files)}


def scope_tables(catalog: Any, env: str, workspace: str) -> dict[str, lake_tables.TableRef]:
    """Every lake table of the run's workspace and environment, by SQL name."""
    return {r.sql_name: r for r in lake_tables.list_tables(catalog, env=env, workspace=workspace)}


def snapshot_input(catalog: Any, ref: lake_tables.TableRef, workdir: Path) -> SnapshotInput:
    """The data files of the table's current snapshot. An empty Parquet file with the table's schema
    comes first (so every column exists even when no file has it yet, and an empty table reads as
    zero rows); a snapshot with delete files is materialised through pyiceberg into the workdir."""
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    table = lake_tables.load(catalog, ref.layer, ref.env, ref.name, ref.workspace)
    snap = table.metadata.current_snapshot()
    folder = workdir / "inputs" / ref.sql_name
    folder.mkdir(parents=True, exist_ok=True)
    arrow_schema = schema_to_pyarrow(table.schema(), include_field_ids=False)
    empty = folder / "_schema.parquet"
    pq.write_table(arrow_schema.empty_table(), empty)
    out = SnapshotInput(ref.sql_name, snap.snapshot_id if snap else None, table.metadata_location,
                        [empty.as_uri()])
    if snap is None:
        return out
    tasks = list(table.scan(snapshot_id=snap.snapshot_id).plan_files())
    if any(t.delete_files for t in tasks):  # merge-on-read deletes: let pyiceberg apply them
        data: pa.Table = table.scan(snapshot_id=snap.snapshot_id).to_arrow()
        path = folder / "materialised.parquet"
        pq.write_table(data, path)
        out.files.append(path.as_uri())
        return out
    out.files += [t.file.file_path for t in tasks]
    return out
