"""Which SQL may run: one read-only statement (DuckDB's parser for DuckDB SQL, a lexical check for
Trino's), and errors that point at the line and column of the fault, with our hints instead of
DuckDB's where those name things a user may not do."""

from __future__ import annotations

import re
from typing import Any

import duckdb

from lakehouse.services.errors import InvalidInput

MAX_SQL_CHARS = 1_000_000
_EXPLAIN_RE = re.compile(r"^\s*EXPLAIN\s+(?:ANALYZE\s+)?(.*)$", re.IGNORECASE | re.DOTALL)


# --- statement checks ---------------------------------------------------------------------------


def check_read_only(sql: str) -> str:
    """The kind of an allowed statement (``select`` or ``explain``); raises ``InvalidInput``
    (``sql_error`` for a syntax error, ``sql_not_allowed`` for anything but one read-only statement)."""
    if not sql or not sql.strip():
        raise InvalidInput("the query is empty", code="sql_not_allowed")
    if len(sql) > MAX_SQL_CHARS:
        raise InvalidInput(f"the query is longer than {MAX_SQL_CHARS} characters", code="sql_not_allowed")
    con = duckdb.connect()
    try:
        statements = _statements(con, sql)
        if not statements:
            raise InvalidInput("the query has no statement", code="sql_not_allowed")
        if len(statements) > 1:
            raise InvalidInput(f"one statement at a time: the query has {len(statements)}",
                               code="sql_not_allowed", details={"statements": len(statements)})
        stmt = statements[0]
        kind = stmt.type.name
        if kind == "EXPLAIN":
            m = _EXPLAIN_RE.match(stmt.query)
            inner = _statements(con, m.group(1)) if m else []
            if len(inner) == 1 and inner[0].type.name == "SELECT" and m and _serializable(con, m.group(1)):
                return "explain"
        elif kind == "SELECT" and _serializable(con, sql):  # the text as written: PRAGMA x reads as SELECT
            return "select"
        raise InvalidInput(f"only read-only queries (SELECT, WITH, VALUES, SHOW, DESCRIBE, EXPLAIN) may run "
                           f"here, not {_verb(stmt.query, kind)}", code="sql_not_allowed",
                           details={"statement": kind.lower()})
    finally:
        con.close()


def _statements(con: duckdb.DuckDBPyConnection, sql: str) -> list[Any]:
    try:
        return list(con.extract_statements(sql))
    except duckdb.Error as exc:
        raise sql_error(exc, sql) from None


def _serializable(con: duckdb.DuckDBPyConnection, sql: str) -> bool:
    """A real SELECT tree (``PRAGMA x`` is typed SELECT but is not one)."""
    row = con.execute("SELECT json_extract(json_serialize_sql(?), '$.error')::BOOLEAN", [sql]).fetchone()
    return bool(row is not None and row[0] is False)


def _verb(sql: str, kind: str) -> str:
    words = re.sub(r"(--[^\n]*|/\*.*?\*/)", " ", sql, flags=re.DOTALL).split()
    return words[0].upper() if words else kind


# --- errors -------------------------------------------------------------------------------------

_LINE_RE = re.compile(r"LINE (\d+): ([^\n]*)\n( *)\^")


def sql_error(exc: BaseException, sql: str) -> InvalidInput:
    """A DuckDB error as ``InvalidInput(code="sql_error")`` with ``details={"line", "column"}`` (1-based)
    when DuckDB gives a position; the message is DuckDB's, without its context lines."""
    text = str(exc)
    message, _, _ = text.partition("\n\nLINE ")
    message = _our_hints(" ".join(line.strip() for line in message.strip().splitlines() if line.strip()))
    details: dict[str, Any] = {"error_type": message.split(":", 1)[0] if ":" in message else type(exc).__name__}
    pos = error_position(text, sql)
    if pos is not None:
        details["line"], details["column"] = pos
    return InvalidInput(message or "the query failed", code="sql_error", details=details)


_INSTALL_RE = re.compile(r"\s*Please try installing and loading the (\w+) extension.*$")


def _our_hints(message: str) -> str:
    """DuckDB's advice to ``INSTALL``/``LOAD`` an extension points at what a lakehouse user may not do."""
    m = _INSTALL_RE.search(message)
    if m is None:
        return message
    return (message[:m.start()].rstrip() + f" The {m.group(1)} extension is not available to lakehouse queries;"
            " tables are queried as layer.table (see the Catalog).")


def error_position(message: str, sql: str) -> tuple[int, int] | None:
    """(line, column), 1-based, from DuckDB's ``LINE n: …`` context and its caret."""
    lines = sql.split("\n")
    m = _LINE_RE.search(message)
    if m is None:
        if "at end of input" in message:
            stripped = sql.rstrip()
            last = stripped.split("\n")
            return len(last), len(last[-1]) + 1
        return None
    line = int(m.group(1))
    snippet = m.group(2)
    caret = len(m.group(3)) - len(f"LINE {m.group(1)}: ")
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    if snippet.startswith("..."):  # DuckDB shortened a long line around the error
        visible = snippet[3:]
        tail = visible.endswith("...")
        if tail:
            visible = visible[:-3]
        start = text.find(visible) if tail else len(text) - len(visible)
        if start < 0:
            start = 0
        return line, start + caret - 3 + 1
    return line, max(caret, 0) + 1


# --- running ------------------------------------------------------------------------------------


# --- trino ------------------------------------------------------------------------------------

_TRINO_FIRST = {"SELECT", "WITH", "VALUES", "SHOW", "DESCRIBE", "TABLE", "EXPLAIN"}
_TRINO_WRITES = {"INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "DROP", "ALTER", "TRUNCATE", "GRANT", "REVOKE",
                 "CALL", "SET", "RESET", "USE", "PREPARE", "EXECUTE", "DEALLOCATE", "COMMENT", "COMMIT",
                 "ROLLBACK", "START", "REFRESH", "DENY", "ANALYZE"}


def check_read_only_trino(sql: str) -> None:
    """Trino SQL is not DuckDB SQL, so this check is lexical: one statement (``;`` outside strings and
    comments only at the end) that starts with SELECT/WITH/VALUES/SHOW/DESCRIBE/TABLE/EXPLAIN (not
    EXPLAIN ANALYZE of a write) and has no write keyword. The Trino user should be read-only too."""
    if not sql or not sql.strip():
        raise InvalidInput("the query is empty", code="sql_not_allowed")
    tokens = duckdb.tokenize(sql)
    words = [(sql[start:(tokens[i + 1][0] if i + 1 < len(tokens) else len(sql))].strip(), kind)
             for i, (start, kind) in enumerate(tokens)]
    while words and words[-1][0] == ";":
        words.pop()
    if not words:
        raise InvalidInput("the query has no statement", code="sql_not_allowed")
    if any(w == ";" or w.startswith(";") for w, _ in words):
        raise InvalidInput("one statement at a time", code="sql_not_allowed")
    first = words[0][0].upper()
    keywords = {w.upper() for w, kind in words if kind == duckdb.token_type.keyword}
    explain_analyze = first == "EXPLAIN" and len(words) > 1 and words[1][0].upper() == "ANALYZE"
    writes = set() if first in ("SHOW", "DESCRIBE") else _TRINO_WRITES - ({"ANALYZE"} if explain_analyze else set())
    if first not in _TRINO_FIRST or keywords & writes:
        raise InvalidInput(f"only read-only queries may run here, not {first}", code="sql_not_allowed")
