"""Our SQL (DuckDB's dialect, ``layer.table`` names) made runnable by Spark SQL. Pure text in, text out.

* ``bronze.x`` / ``silver.x`` / ``gold.x`` become the temporary views the Spark job registers for the
  snapshot inputs and earlier outputs (:func:`view_name`): Spark's session catalog cannot hold a
  temporary view inside a database.
* ``getvariable('name')`` (how the DuckDB transforms read run parameters) becomes the parameter's
  value as a SQL literal.

Everything else is left to Spark: ``::TYPE`` casts, ``GROUP BY ALL`` and ``NULLS FIRST`` work in Spark
4; SQL that uses DuckDB-only syntax fails with Spark's error (the reference gold SQL is written in the
common subset)."""

from __future__ import annotations

import re
from typing import Any

_REF = re.compile(r"\b(bronze|silver|gold)\s*\.\s*([a-z_][a-z0-9_]*)\b", re.IGNORECASE)
_GETVAR = re.compile(r"getvariable\s*\(\s*'([A-Za-z_][A-Za-z0-9_]*)'\s*\)", re.IGNORECASE)


def view_name(table: str) -> str:
    layer, _, name = table.lower().partition(".")
    return f"{layer}__{name}"


def references(sql: str) -> list[str]:
    return sorted({f"{a.lower()}.{b.lower()}" for a, b in _REF.findall(re.sub(r"--[^\n]*", "", sql))})


def literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def to_spark(sql: str, params: dict[str, Any]) -> str:
    """``sql`` with lake table names as view names and ``getvariable`` calls as literals; a variable
    the run does not set is an error (as in DuckDB)."""
    def var(m: re.Match[str]) -> str:
        if m.group(1) not in params:
            raise ValueError(f"getvariable('{m.group(1)}'): the run sets no parameter {m.group(1)!r}")
        return literal(params[m.group(1)])

    text = _GETVAR.sub(var, sql)
    return _REF.sub(lambda m: view_name(f"{m.group(1)}.{m.group(2)}"), text)
