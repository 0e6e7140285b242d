"""The standard-library path of `lakehouse sql`: which arguments it takes (the rest goes to the Typer
command), and the table it prints (the same for answers from the server and from here)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lakehouse.cli import credentials, sql_server
from tests.http_support import JsonHandler, serving


def _result(rows: list[list[Any]], truncated: bool = False) -> dict[str, Any]:
    return {"columns": [{"name": "month", "type": "VARCHAR"}, {"name": "amount", "type": "DECIMAL(12,2)"}],
            "rows": rows, "row_count": len(rows), "truncated": truncated, "duration_ms": 3.4,
            "snapshot_ids": [{"table": "gold.revenue", "snapshot_id": 42}], "query_id": 7}


def test_the_table_right_aligns_numbers_and_shows_null_and_the_footer() -> None:
    text = sql_server.render_table(_result([["2026-01", 10.5], ["2026-02", None], ["2026-03", 1234.25]]))
    lines = text.splitlines()
    assert lines[1] == "┃ month   ┃ amount        ┃" and lines[2] == "┃ VARCHAR ┃ DECIMAL(12,2) ┃"
    assert lines[4] == "│ 2026-01 │          10.5 │"
    assert lines[5] == "│ 2026-02 │          NULL │"
    assert len({len(ln) for ln in lines[:-1]}) == 1  # a rectangle
    assert lines[-1] == "3 rows in 3 ms — read gold.revenue@42 — query 7"
    one = sql_server.render_table(_result([["2026-01", 1]], truncated=True))
    assert one.splitlines()[-1].startswith("1 row (showing 1) in 3 ms")
    assert "\x1b[" not in text and "\x1b[2m" in sql_server.render_table(_result([["x", None]]), color=True)


def test_a_wide_table_is_cut_to_the_terminal_and_wide_characters_count_twice() -> None:
    long = "x" * 200
    text = sql_server.render_table(_result([[long, 1], ["月次売上", 2]]), columns=40)
    lines = text.splitlines()
    assert all(sql_server._width(ln) <= 40 for ln in lines[:-1]), lines
    assert "…" in lines[4] and long not in text
    assert sql_server._width("月次売上") == 8
    # a line break in a value never breaks the table, an escape sequence never reaches the terminal
    hostile = sql_server.render_table(_result([["a\nb\x1b[2J\x9b31m", 1]]))
    assert len(hostile.splitlines()) == 7 and "│ a b [2J 31m │" in hostile and "\x1b" not in hostile


def test_an_answer_without_columns_prints_only_the_footer() -> None:
    empty = {"columns": [], "rows": [], "row_count": 0, "truncated": False, "duration_ms": 1.0,
             "snapshot_ids": [], "query_id": 9}
    assert sql_server.render_table(empty) == "0 rows in 1 ms — query 9"


@pytest.mark.parametrize("argv", [
    ["--help"], ["SELECT 1", "-h"], ["SELECT 1", "--local"], ["SELECT 1", "--format", "csv"], ["SELECT 1", "-f=json"],
    ["SELECT 1", "--limit", "-1"], ["SELECT 1", "--limit", "10001"], ["SELECT 1", "--limit", "ten"],
    ["SELECT 1", "--timeout", "0"], ["SELECT 1", "--timeout", "nan"], ["SELECT 1", "--engine", "spark"],
    ["SELECT 1", "--nosuch"], ["SELECT 1", "SELECT 2"], [], ["SELECT 1", "--env"],
])
def test_what_the_fast_path_leaves_to_the_typer_command(argv: list[str]) -> None:
    assert sql_server._parse(argv) is None


def test_the_fast_path_reads_the_options_as_the_typer_command_does() -> None:
    opts = sql_server._parse(["--env=prod", "SELECT 1", "-f", "table", "--limit", "5", "--timeout", "2.5",
                              "--workspace", "sales", "--engine", "trino", "--server", "http://h:1"])
    assert opts == {"query": "SELECT 1", "engine": "trino", "env": "prod", "workspace": "sales", "limit": 5,
                    "timeout": 2.5, "server": "http://h:1"}
    assert sql_server._parse(["--", "-- a comment\nSELECT 1"])["query"] == "-- a comment\nSELECT 1"  # type: ignore[index]


class _Stand(JsonHandler):
    """Answers ``POST /api/sql`` as the server would: ``status`` and ``body`` set by the test."""
    status = 200
    body: Any = {}
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append({"auth": self.headers["Authorization"], "body": json.loads(raw), "path": self.path})
        self.send_json(type(self).body, type(self).status)


@pytest.fixture
def stand() -> Iterator[str]:
    """A stand-in for the server's one endpoint (the real one is exercised in test_login.py)."""
    _Stand.seen = []
    with serving(_Stand) as url:
        yield url


def test_main_prints_the_answer_and_refusals_in_one_line(stand: str, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LAKEHOUSE_TOKEN", "lh_secret")
    _Stand.status, _Stand.body = 200, _result([["2026-01", 10.5]])
    assert sql_server.main(["SELECT 1", "--server", stand, "--limit", "3"]) == 0
    out = capsys.readouterr()
    assert "│ 2026-01 │          10.5 │" in out.out and out.err == ""
    assert _Stand.seen[0]["auth"] == "Bearer lh_secret" and _Stand.seen[0]["path"] == "/api/sql"
    assert _Stand.seen[0]["body"] == {"sql": "SELECT 1", "engine": "duckdb", "env": "dev", "workspace": "default",
                                      "limit": 3}
    _Stand.status = 400
    _Stand.body = {"error": {"code": "invalid_sql", "message": "no column nosuch",
                             "details": {"line": 2, "column": 3}}}
    assert sql_server.main(["SELECT a,\n  nosuch", "--server", stand]) == 1
    err = capsys.readouterr().err
    assert err == "error: no column nosuch (line 2, column 3)\n    nosuch\n    ^\n"
    _Stand.status, _Stand.body = 401, {"error": {"code": "unauthorized", "message": "no"}}
    assert sql_server.main(["SELECT 1", "--server", stand]) == 1
    err = capsys.readouterr().err
    assert "LAKEHOUSE_TOKEN is not valid" in err and "lh_secret" not in err and err.count("\n") == 1
    others: list[Any] = ["<html>a proxy's page</html>", {"columns": []}]
    for other in others:
        _Stand.status, _Stand.body = 200, other
        assert sql_server.main(["SELECT 1", "--server", stand]) == 1
        assert capsys.readouterr().err == (f"error: the server at {stand} did not answer as a Lakehouse server "
                                           "does (is it one?)\n")
    _Stand.status, _Stand.body = 502, {"not": "ours"}
    assert sql_server.main(["SELECT 1", "--server", stand]) == 1
    assert capsys.readouterr().err == f"error: the server at {stand} answered HTTP 502\n"


def test_no_server_leaves_a_token_query_to_run_here_but_not_a_stored_login(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("LAKEHOUSE_TOKEN", "lh_secret")
    assert sql_server.main(["SELECT 1", "--server", gone]) is None  # the Typer command runs it here
    monkeypatch.delenv("LAKEHOUSE_TOKEN")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert sql_server.main(["SELECT 1"]) is None  # no token at all: here
    credentials.save(credentials.Credential(server=gone, user="ana", token="lh_stored"))
    assert sql_server.main(["SELECT 1"]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach the server at {gone} (your `lakehouse login`)" in err and "lh_stored" not in err


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n3;x=1\r\n 1}\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\": 1}",
    b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{\"a\": 1}trailing bytes never read",
])
def test_the_client_reads_chunked_sized_and_unsized_answers(answer: bytes) -> None:
    import io

    assert json.loads(sql_server._read_response(io.BytesIO(answer))[1]) == {"a": 1}


def test_something_that_is_not_an_http_server_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def babble() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        conn.close()

    threading.Thread(target=babble, daemon=True).start()
    monkeypatch.setenv("LAKEHOUSE_TOKEN", "lh_secret")
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    assert sql_server.main(["SELECT 1", "--server", url]) == 1
    listener.close()
    assert capsys.readouterr().err == f"error: the server at {url} did not answer (OSError)\n"


def test_an_output_without_utf8_gets_an_ascii_box(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", out)
    sql_server.print_table(_result([["2026-01", 10.5], ["月", None]]))
    out.seek(0)
    text = out.buffer.getvalue().decode("ascii")
    assert text.splitlines()[0] == "+---------+---------------+" and "| 2026-01 |          10.5 |" in text
    assert "| ?" in text and "3 ms - read gold.revenue@42 - query 7" in text  # the footer's dashes too
