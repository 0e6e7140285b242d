"""How source column types become Arrow types.

Exact numbers stay exact: every ``numeric``/``decimal`` column becomes ``decimal128(38, 10)`` (or
``decimal128(38, s)`` when the column declares a larger scale ``s``), never a float. JSON becomes its
text (``string``), timestamps ``timestamp[us]`` (``timestamp[us, UTC]`` for ``timestamptz``), dates
``date32``. PostgreSQL types with no exact Arrow twin (uuid, arrays, intervals, …) arrive as text.
"""

from __future__ import annotations

import re

import pyarrow as pa

DECIMAL = pa.decimal128(38, 10)

PG_TYPES: dict[str, pa.DataType] = {
    "int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(), "oid": pa.int64(),
    "float4": pa.float32(), "float8": pa.float64(), "bool": pa.bool_(),
    "date": pa.date32(), "timestamp": pa.timestamp("us"), "timestamptz": pa.timestamp("us", tz="UTC"),
    "varchar": pa.string(), "text": pa.string(), "bpchar": pa.string(), "name": pa.string(),
    "json": pa.string(), "jsonb": pa.string(),
}
_NUMERIC_MOD = re.compile(r"numeric\((\d+),(\d+)\)")


def pg_arrow_type(typname: str, formatted: str) -> pa.DataType:
    """Arrow type of a PostgreSQL column (``typname`` from pg_type, ``formatted`` from format_type)."""
    if typname == "numeric":
        return numeric_arrow_type(formatted)
    return PG_TYPES.get(typname, pa.string())


def numeric_arrow_type(formatted: str) -> pa.DataType:
    match = _NUMERIC_MOD.fullmatch(formatted.replace(" ", ""))
    if match is None:  # unconstrained numeric, Odoo's money columns
        return DECIMAL
    precision, scale = int(match.group(1)), int(match.group(2))
    if scale <= 10 and precision - scale <= 28:
        return DECIMAL
    if precision <= 38:
        return pa.decimal128(precision, scale)
    return pa.string()


def pg_select_expr(column: str, typname: str, arrow_type: pa.DataType) -> str:
    """The PostgreSQL-side expression that makes ``column`` arrive as ``arrow_type``."""
    quoted = '"' + column.replace('"', '""') + '"'
    if pa.types.is_decimal(arrow_type):
        return f"{quoted}::numeric({arrow_type.precision},{arrow_type.scale}) AS {quoted}"
    if pa.types.is_string(arrow_type) and typname not in ("varchar", "text", "bpchar", "name"):
        return f"{quoted}::text AS {quoted}"
    return quoted


def sqlite_arrow_type(declared: str) -> pa.DataType:
    """Arrow type of a SQLite column from its declared type (SQLite's affinity rules, refined)."""
    t = declared.upper()
    if "DECIMAL" in t or "NUMERIC" in t or "MONEY" in t:
        return DECIMAL
    if "JSON" in t:
        return pa.string()
    if "BOOL" in t:
        return pa.bool_()
    if "TIMESTAMP" in t or "DATETIME" in t:
        return pa.timestamp("us")
    if t.startswith("DATE"):
        return pa.date32()
    if "INT" in t:
        return pa.int64()
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return pa.float64()
    return pa.string()
