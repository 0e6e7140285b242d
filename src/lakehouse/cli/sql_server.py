"""`lakehouse sql` through the running server, on the standard library alone.

A query typed in a terminal should answer as fast as the SQL page's Run button: the page waits for one
``POST /api/sql`` on the server's warm DuckDB pool, and so does this. What is left is the price of
starting Python, so this module imports nothing but the standard library and `lakehouse.cli.credentials`
(no Typer, Click or Rich: they cost more than the answer). ``lakehouse.cli.entry`` runs :func:`main`
first; whatever it does not handle (``--help``, an option it does not know or a value out of range,
``--local``, csv/json, no token, a ``LAKEHOUSE_TOKEN`` and no server) goes to the Typer command in
``lakehouse.cli.sql``, which also uses :func:`ask` and :func:`render_table`, so both print the same.
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from typing import Any

from lakehouse.cli import credentials

FORMATS = ("table", "csv", "json")
ENGINES = ("duckdb", "trino")
MAX_PREVIEW = 10_000  # lakehouse.services.sql.MAX_PREVIEW (a test keeps them equal)
NARROWEST = 6  # a column cut to fit the terminal keeps at least this many characters


class Unreachable(Exception):
    """The server did not accept a connection."""


class Refused(Exception):
    """The server answered, with an error for the user (one line, or a caret under the SQL)."""


def post(url: str, body: dict[str, Any], token: str, timeout_s: float) -> tuple[int, bytes]:
    """POST ``body`` as JSON to ``url`` with the bearer ``token``; the status and the raw answer.
    Connecting waits 5 s at most (else :class:`Unreachable`), reading waits ``timeout_s``. One request on
    a socket of its own (HTTP/1.1, ``Connection: close``): ``http.client`` alone would import the email
    package and ``ssl``, a third of this command's start-up; ``ssl`` is loaded for https only."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    https = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if https else 80)
    try:
        sock = socket.create_connection((host, port), timeout=5.0)
    except OSError as exc:
        raise Unreachable(str(exc)) from None
    try:
        if https:
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        sock.settimeout(timeout_s)
        payload = json.dumps(body).encode()
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = host if ":" not in host else f"[{host}]"
        head = (f"POST {target} HTTP/1.1\r\nHost: {netloc}{'' if parts.port is None else f':{port}'}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\nUser-Agent: lakehouse-cli\r\n\r\n")
        sock.sendall(head.encode("latin-1") + payload)
        return _read_response(sock.makefile("rb"))
    finally:
        sock.close()


def _read_response(f: Any) -> tuple[int, bytes]:
    """Status and body of an HTTP/1.1 answer: Content-Length, chunked, or read to the end."""
    status_line = f.readline(65537)
    try:
        version, code = status_line.split(None, 2)[:2]
        if not version.startswith(b"HTTP/"):
            raise ValueError(status_line)
        status = int(code)
    except ValueError:
        raise OSError("not an HTTP answer") from None
    headers: dict[str, str] = {}
    while (line := f.readline(65537)) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while (size := int(f.readline(65537).split(b";")[0].strip() or b"0", 16)) > 0:
            chunks.append(f.read(size))
            f.readline(65537)  # the CRLF after the chunk
        return status, b"".join(chunks)
    if "content-length" in headers:
        return status, f.read(int(headers["content-length"]))
    return status, f.read()


def ask(query: str, engine: str, env: str, workspace: str, limit: int, timeout: float | None,
        server: str | None = None) -> dict[str, Any] | None:
    """The server's answer; None when the query should run here (no token, or a ``LAKEHOUSE_TOKEN`` and
    no server). :class:`Refused` for an answer that is an error (bad SQL, not allowed, too many queries,
    a revoked token, a stored login that cannot be used or whose server is away)."""
    try:
        url, token, source = credentials.resolve(server)
    except credentials.CredentialError as exc:
        raise Refused(str(exc)) from None
    if token is None:
        return None
    body = {"sql": query, "engine": engine, "env": env, "workspace": workspace, "limit": limit,
            **({"timeout_s": timeout} if timeout is not None else {})}
    try:
        status, payload = post(url + "/api/sql", body, token, (timeout or 600) + 30)
    except Unreachable:
        if source == "env":
            return None  # no server here: answer locally
        raise Refused(f"cannot reach the server at {url} (your `lakehouse login`): start it, or add --local "
                      "to run here") from None
    except (OSError, ValueError) as exc:
        raise Refused(f"the server at {url} did not answer ({type(exc).__name__})") from None
    if status == 200:
        try:
            answer = json.loads(payload)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not {"columns", "rows", "row_count", "query_id"} <= answer.keys():
            raise Refused(f"the server at {url} did not answer as a Lakehouse server does (is it one?)")
        return answer
    if status == 401:
        raise Refused(credentials.stale_message(url, source))
    try:
        err = json.loads(payload)["error"]
    except (ValueError, KeyError, TypeError):
        raise Refused(f"the server at {url} answered HTTP {status}") from None
    raise Refused(describe(err.get("message", f"HTTP {status}"), err.get("details"), query))


def describe(message: str, details: Any, query: str) -> str:
    """An error message; with the line of the SQL and a caret under the column when it names one."""
    if isinstance(details, dict) and "line" in details:
        line, col = details["line"], details["column"]
        lines = query.split("\n")
        where = f" (line {line}, column {col})"
        if 0 < line <= len(lines):
            return f"{message}{where}\n  {lines[line - 1]}\n  {' ' * max(col - 1, 0)}^"
        return message + where
    return message


# --- the table ------------------------------------------------------------------------------------------

NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
           "UBIGINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL", "INT", "NUMERIC")


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal (East Asian wide characters take two)."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in text)


def _cut(text: str, width: int) -> str:
    if _width(text) <= width:
        return text
    out, used = [], 0
    for c in text:
        w = _width(c)
        if used + w > width - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + "…"


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * (width - _width(text))
    return gap + text if right else text + gap


# control characters in a value (line breaks, tabs, a terminal's escape sequences) print as a space:
# data never moves the cursor, changes colours or breaks the table
_CONTROLS = {c: " " for c in (*range(0x20), *range(0x7F, 0xA0))}


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value).translate(_CONTROLS)


def render_table(result: dict[str, Any], columns: int | None = None, color: bool = False) -> str:
    """The answer of ``POST /api/sql`` as a boxed text table (name and type over each column, numbers to
    the right, NULL dimmed when ``color``) fitted to ``columns`` characters (the widest columns are cut
    with …), then the row count, the time, the snapshots read and the query id."""
    dim, off = ("\x1b[2m", "\x1b[0m") if color else ("", "")
    names = [str(c["name"]).translate(_CONTROLS) for c in result["columns"]]
    types = [str(c["type"]).translate(_CONTROLS) for c in result["columns"]]
    right = [t.upper().split("(")[0] in NUMERIC for t in types]
    rows = [[_cell(v) for v in row] for row in result["rows"]]
    nulls = [[v is None for v in row] for row in result["rows"]]
    widths = [max([_width(n), _width(t), *(_width(r[i]) for r in rows)]) for i, (n, t) in enumerate(zip(names, types,
                                                                                                         strict=True))]
    if columns and widths:
        # cut the widest column by one until the table fits (or every column is at its narrowest)
        while sum(widths) + 3 * len(widths) + 1 > columns:
            widest = max(range(len(widths)), key=lambda i: widths[i])
            if widths[widest] <= NARROWEST:
                break
            widths[widest] -= 1
    lines: list[str] = []
    if widths:
        lines.append("┏" + "┳".join("━" * (w + 2) for w in widths) + "┓")
        lines.append("┃" + "┃".join(f" {_pad(_cut(n, w), w, False)} " for n, w in zip(names, widths, strict=True))
                     + "┃")
        lines.append("┃" + "┃".join(f" {dim}{_pad(_cut(t, w), w, False)}{off} " for t, w in zip(types, widths,
                                                                                              strict=True)) + "┃")
        lines.append("┡" + "╇".join("━" * (w + 2) for w in widths) + "┩")
        for row, null in zip(rows, nulls, strict=True):
            cells = []
            for i, w in enumerate(widths):
                text = _pad(_cut(row[i], w), w, right[i])
                cells.append(f" {dim}{text}{off} " if null[i] else f" {text} ")
            lines.append("│" + "│".join(cells) + "│")
        lines.append("└" + "┴".join("─" * (w + 2) for w in widths) + "┘")
    shown = len(result["rows"])
    more = f" (showing {shown})" if result["truncated"] else ""
    snaps = ", ".join(f"{s['table']}@{s['snapshot_id']}" for s in result["snapshot_ids"])
    count = result["row_count"]
    lines.append(f"{count:,} row{'' if count == 1 else 's'}{more} in {result['duration_ms']:.0f} ms"
                 + (f" — read {snaps}" if snaps else "") + f" — query {result['query_id']}")
    return "\n".join(lines)


# the box in ASCII, for an output whose encoding has no box-drawing characters
_ASCII_BOX = str.maketrans("┏┳┓┃┡╇┩│└┴┘━─…—", "+++|+++|+++--~-")


def print_table(result: dict[str, Any]) -> None:
    """:func:`render_table` on stdout, fitted to the terminal; colour only on a terminal without NO_COLOR;
    an ASCII box (and ``?`` for what cannot be shown) when stdout's encoding is not UTF-8."""
    tty = sys.stdout.isatty()
    columns = None
    try:
        if tty:
            columns = os.get_terminal_size(sys.stdout.fileno()).columns
        elif os.environ.get("COLUMNS", "").isdigit():
            columns = int(os.environ["COLUMNS"])
    except OSError:
        columns = None
    text = render_table(result, columns, color=tty and not os.environ.get("NO_COLOR")) + "\n"
    encoding = sys.stdout.encoding or "utf-8"
    if encoding.lower().replace("-", "").replace("_", "") not in ("utf8", "utf8sig"):
        text = text.translate(_ASCII_BOX).encode(encoding, errors="replace").decode(encoding)
    sys.stdout.write(text)
    sys.stdout.flush()


def error(message: str) -> int:
    """One line (or the SQL with a caret) on stderr, as ``lakehouse.cli.common.fail`` prints it; exit 1."""
    tty = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    sys.stderr.write(("\x1b[1;31merror:\x1b[0m " if tty else "error: ") + message + "\n")
    return 1


# --- the fast path --------------------------------------------------------------------------------------

def _parse(argv: list[str]) -> dict[str, Any] | None:
    """``lakehouse sql`` arguments as the Typer command takes them, or None when this path should not
    handle them (help, a mistake, ``--local``, csv/json): the Typer command then answers."""
    if any(a in ("--help", "-h") for a in argv):
        return None
    opts: dict[str, Any] = {"engine": "duckdb", "format": "table", "env": "dev", "workspace": "default",
                            "limit": 100, "timeout": None, "server": None}
    names = {"--engine": "engine", "--format": "format", "-f": "format", "--env": "env",
             "--workspace": "workspace", "--limit": "limit", "--timeout": "timeout", "--server": "server"}
    query: str | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest = argv[i + 1:]
            if query is not None or len(rest) != 1:
                return None
            query = rest[0]
            break
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            if name not in names:
                return None  # --local, or something the Typer command will explain
            if not eq:
                if i + 1 >= len(argv):
                    return None
                i += 1
                value = argv[i]
            opts[names[name]] = value
        elif query is None:
            query = arg
        else:
            return None
        i += 1
    if query is None or opts["format"] != "table" or opts["engine"] not in ENGINES:
        return None
    try:
        opts["limit"] = int(opts["limit"])
        opts["timeout"] = None if opts["timeout"] is None else float(opts["timeout"])
    except ValueError:
        return None
    if not 0 <= opts["limit"] <= MAX_PREVIEW or (opts["timeout"] is not None and not opts["timeout"] >= 0.001):
        return None
    del opts["format"]
    opts["query"] = query
    return opts


HERE = "here"  # asked already: there is no server to ask, the query runs in this process


def run(argv: list[str]) -> int | str | None:
    """Answer ``lakehouse sql ARGV`` through the server: the exit code; :data:`HERE` when it asked and
    the query must run in this process (the caller adds ``--local``, so nobody asks again); None when
    the Typer command should read the arguments itself."""
    opts = _parse(argv)
    if opts is None:
        return None
    try:
        answer = ask(opts["query"], opts["engine"], opts["env"], opts["workspace"], opts["limit"], opts["timeout"],
                     opts["server"])
    except Refused as exc:
        return error(str(exc))
    if answer is None:
        return HERE
    print_table(answer)
    return 0


def main(argv: list[str]) -> int | None:
    """:func:`run`, with None for "leave it to the Typer command" (which runs the query here, or
    explains the arguments)."""
    code = run(argv)
    return None if code == HERE else code  # type: ignore[return-value]
