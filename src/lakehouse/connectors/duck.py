"""Load DuckDB extensions from their Python wheels (``duckdb-extension-<name>``), offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb

from lakehouse.connectors.errors import SourceError


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load extension ``name`` into ``con`` from its wheel (or the ``duckdb_extensions`` helper)."""
    try:
        import duckdb_extensions

        duckdb_extensions.import_extension(name, con=con)
        return
    except ImportError:
        pass
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise SourceError(f"the DuckDB {name} extension is not installed: pip install "
                          f"duckdb-extension-{name}=={duckdb.__version__}")
    base = Path(locations[0]) / "extensions"
    path = base / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.exists():
        found = sorted(base.glob(f"*/{name}.duckdb_extension"))
        if not found:
            raise SourceError(f"no {name}.duckdb_extension file under {base}")
        path = found[-1]
    con.load_extension(str(path))
