"""The SQL service: results, Parquet artifact, history (failures too), errors with positions, read-only."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.lake.tables import write_table
from lakehouse.services import auth, connections, sql, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import Forbidden, InvalidInput, NotFound
from lakehouse.store.tables import blobs, memberships, query_history, users
from tests.http_support import JsonHandler, serving


def _analyst(ctx: Context) -> Principal:
    auth.create_user(ctx, "ana", "analyst", "long enough pw")
    return auth.authenticate_password(ctx, "ana", "long enough pw")


def _outsider(ctx: Context) -> Principal:
    """An analyst who belongs to workspace ``acme`` only."""
    auth.create_user(ctx, "eve", "analyst", "long enough pw")
    acme = workspaces.create(ctx, "acme")
    with ctx.db.write() as conn:
        uid: int = conn.execute(select(users.c.id).where(users.c.name == "eve")).scalar_one()
        conn.execute(memberships.delete().where(memberships.c.user_id == uid))
        conn.execute(memberships.insert().values(workspace_id=acme, user_id=uid, role="analyst"))
    return auth.authenticate_password(ctx, "eve", "long enough pw")


def test_a_query_returns_rows_stores_its_result_and_is_recorded(ctx: Context, catalog: Any) -> None:
    v = write_table(catalog, "silver", "dev", "invoices",
                    pa.table({"id": [1, 2, 3], "amount": pa.array([Decimal("10.50"), Decimal("2.25"), None],
                                                                 pa.decimal128(12, 2)), "partner": ["a", "b", "a"]}))
    write_table(catalog, "silver", "prod", "invoices", pa.table({"id": [99], "amount": [1.0], "partner": ["z"]}))
    p = _analyst(ctx)
    query = ("SELECT partner, sum(amount) AS total, count(*) AS n\n"
             "FROM silver.invoices GROUP BY partner ORDER BY partner")
    out = sql.run_query(ctx, p, query, limit_preview=1)
    assert out["columns"] == [{"name": "partner", "type": "VARCHAR"}, {"name": "total", "type": "DECIMAL(38,2)"},
                              {"name": "n", "type": "BIGINT"}]
    assert out["rows"] == [["a", "10.50", 2]] and out["row_count"] == 2 and out["truncated"]
    assert out["snapshot_ids"] == [{"table": "silver.invoices", "snapshot_id": v.snapshot_id}]
    assert out["duration_ms"] > 0 and out["env"] == "dev" and out["engine"] == "duckdb"

    stored = pq.read_table(sql.result_file(ctx, p, out["query_id"]))
    assert stored.num_rows == 2 and stored.column_names == ["partner", "total", "n"]
    with ctx.db.read() as conn:
        blob = conn.execute(select(blobs).where(blobs.c.sha256 == out["result_sha256"])).mappings().one()
        row = conn.execute(select(query_history).where(query_history.c.id == out["query_id"])).mappings().one()
    assert blob["size_bytes"] > 0
    assert (row["status"], row["user_name"], row["engine"], row["rows"], row["sql_text"]) == (
        "succeeded", "ana", "duckdb", 2, query)
    assert row["snapshot_ids"] == out["snapshot_ids"] and row["result_sha256"] == out["result_sha256"]

    again = sql.run_query(ctx, p, query)  # same result, same content address
    assert again["result_sha256"] == out["result_sha256"] and again["query_id"] != out["query_id"]
    prod = sql.run_query(ctx, p, "SELECT id FROM silver.invoices", env="prod")
    assert prod["rows"] == [[99]]


def test_values_become_json(ctx: Context, catalog: Any) -> None:
    out = sql.run_query(ctx, SYSTEM, "SELECT 1.5::DECIMAL(10,3) AS d, DATE '2026-01-02' AS day, "
                        "TIMESTAMPTZ '2026-01-02 03:04:05+00' AS at, 'nan'::DOUBLE AS f, '\\x01'::BLOB AS b, "
                        "[1, 2] AS l, {'k': 1} AS s, MAP {'a': 1} AS m, NULL AS n, 1 AS n")
    assert out["rows"] == [["1.500", "2026-01-02", "2026-01-02T03:04:05+00:00", "NaN", "AQ==", [1, 2],
                            {"k": 1}, {"a": 1}, None, 1]]


def test_sql_errors_carry_line_and_column(ctx: Context, catalog: Any) -> None:
    write_table(catalog, "bronze", "dev", "t", pa.table({"id": [1]}))
    with pytest.raises(InvalidInput) as err:
        sql.run_query(ctx, SYSTEM, "SELECT id,\n       nosuch\nFROM bronze.t")
    assert err.value.code == "sql_error"
    assert err.value.details["line"] == 2 and err.value.details["column"] == 8
    assert "nosuch" in err.value.message and "LINE" not in err.value.message
    with pytest.raises(InvalidInput) as err:
        sql.run_query(ctx, SYSTEM, "SELECT *\nFROM bronze.t\nWHERE id = = 1")
    assert err.value.code == "sql_error" and (err.value.details["line"], err.value.details["column"]) == (3, 12)
    with pytest.raises(InvalidInput) as err:
        sql.run_query(ctx, SYSTEM, "SELECT * FROM silver.missing")
    assert err.value.code == "sql_error" and err.value.details["column"] == 15
    history = sql.search_history(ctx, SYSTEM, status="failed")
    assert len(history) == 3 and all(h["error"] for h in history)


@pytest.mark.parametrize("statement", [
    "INSERT INTO t VALUES (1)", "UPDATE t SET a = 1", "DELETE FROM t", "CREATE TABLE x (a INT)",
    "CREATE VIEW v AS SELECT 1", "DROP TABLE t", "ATTACH 'x.db' AS x", "DETACH x", "COPY (SELECT 1) TO 'x.csv'",
    "INSTALL httpfs", "LOAD httpfs", "PRAGMA version", "PRAGMA enable_profiling", "SET threads = 1", "RESET threads",
    "USE bronze", "CALL pragma_version()", "EXPORT DATABASE 'x'", "CHECKPOINT", "BEGIN", "VACUUM",
    "SELECT 1; DROP TABLE t", "SELECT 1; SELECT 2", "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
    "EXPLAIN INSERT INTO t VALUES (1)", "PIVOT bronze.t ON id", "", "  -- only a comment",
])
def test_only_read_only_statements_pass(statement: str) -> None:
    with pytest.raises(InvalidInput) as err:
        sql.check_read_only(statement)
    assert err.value.code == "sql_not_allowed", statement


@pytest.mark.parametrize("statement", [
    "SELECT 1", "select 1;", "WITH a AS (SELECT 1) SELECT * FROM a", "VALUES (1), (2)", "FROM bronze.t",
    "SHOW TABLES", "DESCRIBE bronze.t", "SUMMARIZE bronze.t", "EXPLAIN SELECT 1", "EXPLAIN ANALYZE SELECT 1",
    "SELECT 1 -- ; DROP TABLE t", "/* a */ SELECT 2",
])
def test_read_only_statements(statement: str) -> None:
    assert sql.check_read_only(statement) in ("select", "explain")


def test_disallowed_and_unavailable_are_recorded(ctx: Context, catalog: Any) -> None:
    with pytest.raises(InvalidInput) as err:
        sql.run_query(ctx, SYSTEM, "SELECT 1; DELETE FROM bronze.t")
    assert err.value.code == "sql_not_allowed" and "one statement" in err.value.message
    with pytest.raises(InvalidInput) as err:
        sql.run_query(ctx, SYSTEM, "DROP TABLE bronze.t")
    assert err.value.code == "sql_not_allowed" and "DROP" in err.value.message
    with pytest.raises(InvalidInput) as err:
        sql.run_query(ctx, SYSTEM, "SELECT 1", engine="trino")
    assert err.value.code == "engine_unavailable" and "Trino" in err.value.message
    with pytest.raises(InvalidInput) as err:
        sql.run_query(ctx, SYSTEM, "SELECT * FROM read_csv('/etc/passwd')")
    assert err.value.code == "sql_error" and "disabled" in err.value.message
    assert [h["status"] for h in sql.search_history(ctx, SYSTEM)] == ["failed"] * 4
    with pytest.raises(InvalidInput):
        sql.run_query(ctx, SYSTEM, "SELECT 1", env="qa")


def test_a_query_that_runs_too_long_is_stopped(ctx: Context, catalog: Any) -> None:
    with pytest.raises(InvalidInput) as err:
        sql.run_query(ctx, SYSTEM, "SELECT count(*) FROM range(1000000000000) a", timeout_s=0.3)
    assert err.value.code == "query_timeout"


def test_history_search_and_pagination(ctx: Context, catalog: Any) -> None:
    ana = _analyst(ctx)
    for i in range(5):
        sql.run_query(ctx, ana if i % 2 else SYSTEM, f"SELECT {i} AS Value_{i}")
    with pytest.raises(InvalidInput):
        sql.run_query(ctx, ana, "SELECT nope")
    everything = sql.search_history(ctx, SYSTEM)
    assert len(everything) == 6 and everything[0]["status"] == "failed"
    assert [h["query_id"] for h in everything] == sorted((h["query_id"] for h in everything), reverse=True)
    assert [h["sql"] for h in sql.search_history(ctx, SYSTEM, q="value_3")] == ["SELECT 3 AS Value_3"]
    assert len(sql.search_history(ctx, SYSTEM, q="%")) == 0  # LIKE wildcards are literal
    assert {h["user"] for h in sql.search_history(ctx, SYSTEM, user="ana")} == {"ana"}
    assert len(sql.search_history(ctx, SYSTEM, user="ana", status="succeeded")) == 2
    page1 = sql.search_history(ctx, SYSTEM, limit=4)
    page2 = sql.search_history(ctx, SYSTEM, limit=4, before=page1[-1]["query_id"])
    assert len(page1) == 4 and len(page2) == 2
    assert not {h["query_id"] for h in page1} & {h["query_id"] for h in page2}
    assert sql.get_query(ctx, ana, page1[0]["query_id"])["status"] == "failed"


def test_workspaces_are_walls(ctx: Context, catalog: Any) -> None:
    write_table(catalog, "gold", "dev", "secret", pa.table({"id": [42]}))
    write_table(catalog, "gold", "dev", "secret", pa.table({"id": [7]}), workspace="acme")
    out = sql.run_query(ctx, SYSTEM, "SELECT id FROM gold.secret")
    eve = _outsider(ctx)
    with pytest.raises(NotFound):
        sql.run_query(ctx, eve, "SELECT id FROM gold.secret")  # the default workspace is not hers
    assert sql.run_query(ctx, eve, "SELECT id FROM gold.secret", workspace="acme")["rows"] == [[7]]
    assert [h["workspace"] for h in sql.search_history(ctx, eve)] == ["acme"]
    with pytest.raises(NotFound):
        sql.get_query(ctx, eve, out["query_id"])
    with pytest.raises(NotFound):
        sql.result_file(ctx, eve, out["query_id"])
    with pytest.raises(NotFound):
        sql.search_history(ctx, eve, workspace="default")
    viewer = Principal(name="vic", role="viewer")
    with pytest.raises(Forbidden):
        sql.run_query(ctx, viewer, "SELECT 1")


@pytest.mark.parametrize(("message", "query", "expected"), [
    ('Binder Error: x\n\nLINE 1: select a, nosuch\n                  ^', "select a, nosuch", (1, 11)),
    ("Parser Error: syntax error at end of input", "select 1 from t\nwhere ", (2, 6)),
    ("Binder Error: x\n\nLINE 1: ...+1+1+1+nosuch\n                  ^", "select " + "1+" * 40 + "nosuch",
     (1, 88)),
    ("Binder Error: x\n\nLINE 2:   c0, c1, c2,...\n              ^", "select 1,\n  c0, c1, c2, c3, c4", (2, 7)),
    ("Catalog Error: no position", "select 1", None),
])
def test_error_positions(message: str, query: str, expected: tuple[int, int] | None) -> None:
    assert sql.error_position(message, query) == expected


class _FakeTrino(JsonHandler):
    """Enough of Trino's client protocol (POST /v1/statement, one page) for the client library."""

    statements: ClassVar[list[tuple[str, str | None]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.statements.append((body, self.headers.get("X-Trino-Catalog")))
        if "nosuch" in body:
            doc: dict[str, Any] = {"id": "q2", "infoUri": "http://trino/q2", "stats": {"state": "FAILED"}, "error": {
                "message": "line 2:3: Column 'nosuch' cannot be resolved", "errorCode": 47,
                "errorName": "COLUMN_NOT_FOUND", "errorType": "USER_ERROR",
                "errorLocation": {"lineNumber": 2, "columnNumber": 3}}}
        else:
            doc = {"id": "q1", "infoUri": "http://trino/q1", "stats": {"state": "FINISHED"}, "columns": [
                {"name": "id", "type": "integer", "typeSignature": {"rawType": "integer", "arguments": []}},
                {"name": "amount", "type": "decimal(10,2)", "typeSignature": {"rawType": "decimal", "arguments": [
                    {"kind": "LONG", "value": 10}, {"kind": "LONG", "value": 2}]}},
                {"name": "tags", "type": "array(varchar)", "typeSignature": {"rawType": "array", "arguments": [
                    {"kind": "TYPE", "value": {"rawType": "varchar", "arguments": []}}]}}],
                "data": [[1, "10.50", ["a"]], [2, None, []]]}
        self.send_json(doc)


def test_trino_engine_through_a_configured_connection(ctx: Context) -> None:
    """Trino cannot run here: a stand-in HTTP server speaks its protocol to the real ``trino`` client."""
    with pytest.raises(InvalidInput) as err:
        sql.run_query(ctx, SYSTEM, "SELECT 1", engine="trino")
    assert err.value.code == "engine_unavailable" and "none is configured" in err.value.message
    with serving(_FakeTrino) as url:
        connections.create(ctx, SYSTEM, workspace="default", environment="dev", name="trino", type_="trino",
                           config={"host": "127.0.0.1", "port": url.rsplit(":", 1)[1], "user": "lake"},
                           secrets={})
        out = sql.run_query(ctx, SYSTEM, "SELECT id, amount, tags FROM iceberg.bronze_dev.t", engine="trino")
        assert out["columns"] == [{"name": "id", "type": "integer"}, {"name": "amount", "type": "decimal(10,2)"},
                                  {"name": "tags", "type": "array(varchar)"}]
        assert out["rows"] == [[1, "10.50", '["a"]'], [2, None, "[]"]] and out["snapshot_ids"] == []
        assert pq.read_table(sql.result_file(ctx, SYSTEM, out["query_id"])).num_rows == 2
        assert _FakeTrino.statements[-1] == ("SELECT id, amount, tags FROM iceberg.bronze_dev.t", "iceberg")
        with pytest.raises(InvalidInput) as err:
            sql.run_query(ctx, SYSTEM, "SELECT id,\n  nosuch FROM t", engine="trino")
        assert err.value.code == "sql_error" and (err.value.details["line"], err.value.details["column"]) == (2, 3)
        with pytest.raises(InvalidInput) as err:
            sql.run_query(ctx, SYSTEM, "DELETE FROM iceberg.bronze_dev.t", engine="trino")
        assert err.value.code == "sql_not_allowed"
        with pytest.raises(InvalidInput) as err:
            sql.run_query(ctx, SYSTEM, "SELECT 1", engine="trino", env="prod")
        assert err.value.code == "engine_unavailable"
    assert [h["engine"] for h in sql.search_history(ctx, SYSTEM)] == ["trino"] * 5


# --- limits (issue 10, item 7) --------------------------------------------------------------------


def test_each_query_has_a_memory_limit_and_a_private_spill_folder_removed_after(ctx: Context, catalog: Any) -> None:
    ctx.settings.sql_memory_limit_mb = 64
    out = sql.run_query(ctx, SYSTEM, "SELECT current_setting('memory_limit') AS m, "
                        "current_setting('temp_directory') AS t")
    memory, temp = out["rows"][0]
    assert memory.startswith("64") or memory.startswith("61")  # 64 MB, shown in MiB
    spill = Path(temp)
    assert spill.is_relative_to(ctx.settings.home / "sql-tmp") and not spill.parent.exists()
    other = sql.run_query(ctx, SYSTEM, "SELECT current_setting('temp_directory') AS t")["rows"][0][0]
    assert other != temp


def test_timeout_defaults_to_the_admins_maximum_and_more_is_refused(ctx: Context, catalog: Any) -> None:
    ctx.settings.sql_max_timeout_s = 20
    assert sql.check_timeout(ctx, None) == 20 and sql.check_timeout(ctx, 5) == 5
    with pytest.raises(InvalidInput) as err:
        sql.run_query(ctx, SYSTEM, "SELECT 1", timeout_s=21)
    assert err.value.code == "timeout_too_long" and err.value.details["max_timeout_s"] == 20
    assert sql.search_history(ctx, SYSTEM) == []  # refused before it ran


def test_preview_is_capped_in_rows_and_bytes(ctx: Context, catalog: Any) -> None:
    by_rows = sql.run_query(ctx, SYSTEM, "SELECT range AS n FROM range(10)", limit_preview=3)
    assert (len(by_rows["rows"]), by_rows["truncated"], by_rows["truncated_by"]) == (3, True, "rows")
    ctx.settings.sql_preview_max_bytes = 1024
    by_bytes = sql.run_query(ctx, SYSTEM, "SELECT repeat('y', 300) AS s FROM range(10)", limit_preview=10)
    assert len(by_bytes["rows"]) == 3 and by_bytes["row_count"] == 10 and by_bytes["truncated_by"] == "bytes"
    assert len(json.dumps(by_bytes["rows"])) <= 1024
    whole = sql.run_query(ctx, SYSTEM, "SELECT 1 AS n")
    assert whole["truncated"] is False and whole["truncated_by"] is None


def test_running_queries_are_capped_per_user_and_workspace(ctx: Context) -> None:
    from lakehouse.services.errors import RateLimited
    from lakehouse.services.sql_pool import SqlGate

    ctx.settings.sql_max_per_user, ctx.settings.sql_max_per_workspace = 1, 2
    gate = SqlGate(ctx.settings)
    with gate.admit("ana", 1, 10):
        with pytest.raises(RateLimited) as err, gate.admit("ana", 2, 10):
            pass
        assert err.value.code == "sql_user_busy" and 1 <= err.value.details["retry_after_s"] <= 10
        with gate.admit("bob", 1, 10):
            with pytest.raises(RateLimited) as err, gate.admit("cy", 1, 10):
                pass
            assert err.value.details["cap"] == "sql_max_per_workspace"
            with gate.admit("cy", 2, 10):
                assert gate.running() == 3
    assert gate.running() == 0


def test_expired_results_keep_content_others_still_name(ctx: Context, catalog: Any) -> None:
    from lakehouse.lake.blobstore import BlobStore
    from lakehouse.services import sql_results

    acme = workspaces.create(ctx, "acme")
    first = sql.run_query(ctx, SYSTEM, "SELECT 'shared' AS s")
    twin = sql.run_query(ctx, SYSTEM, "SELECT 'shared' AS s", workspace="acme")  # same content, other workspace
    assert twin["result_sha256"] == first["result_sha256"]
    ctx.settings.sql_result_quota_bytes = 0
    default_ws = workspaces.resolve_for(ctx, SYSTEM, "default")
    assert sql_results.sweep(ctx, default_ws) == [first["query_id"]]
    store = BlobStore(ctx.settings.artifacts_dir)
    assert store.exists(first["result_sha256"])  # acme's query still names it
    with pytest.raises(NotFound) as err:
        sql.result_file(ctx, SYSTEM, first["query_id"])
    assert err.value.code == "result_expired"
    assert sql.get_query(ctx, SYSTEM, first["query_id"])["result_expired"] is True
    assert sql_results.sweep(ctx, acme) == [twin["query_id"]]
    assert not store.exists(first["result_sha256"])
    with ctx.db.read() as conn:
        assert conn.execute(select(blobs).where(blobs.c.sha256 == first["result_sha256"])).first() is None


def test_a_viewer_sees_history_but_cannot_download_results(ctx: Context, catalog: Any) -> None:
    out = sql.run_query(ctx, SYSTEM, "SELECT 42 AS n")
    auth.create_user(ctx, "vic", "viewer", "long enough pw")
    vic = auth.authenticate_password(ctx, "vic", "long enough pw")
    assert sql.get_query(ctx, vic, out["query_id"])["rows"] == 1
    with pytest.raises(Forbidden):
        sql.result_file(ctx, vic, out["query_id"])
    assert sql.result_file(ctx, _analyst(ctx), out["query_id"]).exists()
