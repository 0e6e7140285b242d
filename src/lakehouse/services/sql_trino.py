"""Queries on a workspace's Trino connection (``engine="trino"``): the client, result paging into the
result sink, and Trino's types as Arrow types."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pyarrow as pa

from lakehouse.domain.principal import Principal
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput, ServiceError
from lakehouse.services.sql_results import ResultSink as _ResultSink


def _trino_connection(ctx: Context, principal: Principal, workspace: str, env: str
                      ) -> tuple[dict[str, Any], dict[str, str]]:
    from lakehouse.services import connections

    try:
        found = [c for c in connections.list_connections(ctx, principal, environment=env)
                 if c["type"] == "trino" and c["workspace"] == workspace]
    except ServiceError:
        found = []
    if not found:
        raise InvalidInput(f"the trino engine needs a Trino connection in workspace {workspace!r}, environment "
                           f"{env!r}, and none is configured: add one (type trino) or use engine duckdb",
                           code="engine_unavailable")
    return connections.resolve(ctx, principal, int(found[0]["id"]))


def run_trino(ctx: Context, principal: Principal, sql: str, env: str, workspace: str, limit_preview: int,
               timeout_s: float) -> dict[str, Any]:
    """Run the query on a configured Trino (tables are ``<catalog>.<namespace>.<table>`` there, e.g.
    ``iceberg.bronze_dev.account_move``)."""
    config, secrets = _trino_connection(ctx, principal, workspace, env)
    try:
        import trino
        from trino.exceptions import TrinoQueryError, TrinoUserError
    except ImportError:
        raise InvalidInput("the trino engine needs the Trino client: pip install 'lakehouse[trino]'",
                           code="engine_unavailable") from None
    user, password = config.get("user", "lakehouse"), secrets.get("password")
    if config.get("read_only_user") and principal.role in ("analyst", "viewer"):  # analysts query read-only
        user, password = config["read_only_user"], secrets.get("read_only_password")
    auth = trino.auth.BasicAuthentication(user, password) if password else None
    sink = _ResultSink(ctx, limit_preview)
    try:
        conn = trino.dbapi.connect(
            host=config["host"], port=int(config.get("port", 8080)), user=user,
            catalog=config.get("catalog", "iceberg"), http_scheme=config.get("http_scheme", "http"), auth=auth,
            request_timeout=timeout_s or 300.0,
            session_properties={"query_max_run_time": f"{int(timeout_s)}s"} if timeout_s else None)
        try:
            cur = conn.cursor()
            cur.execute(sql)
            columns = [{"name": d[0], "type": str(d[1])} for d in (cur.description or [])]
            schema = pa.schema([(c["name"], arrow_type(c["type"])) for c in columns])
            sink.open(schema)
            while rows := cur.fetchmany(10_000):
                sink.write(batch(schema, rows))
        except TrinoUserError as exc:
            details: dict[str, Any] = {"error_type": exc.error_name}
            if exc.error_location:
                details["line"], details["column"] = exc.error_location
            raise InvalidInput(exc.message, code="sql_error", details=details) from None
        except TrinoQueryError as exc:
            raise InvalidInput(exc.message, code="sql_error", details={"error_type": exc.error_name}) from None
        except (OSError, trino.exceptions.HttpError, trino.exceptions.TrinoConnectionError) as exc:
            raise InvalidInput(f"cannot reach Trino at {config['host']}:{config.get('port', 8080)}: "
                               f"{type(exc).__name__}", code="engine_unavailable") from None
        finally:
            conn.close()
        return sink.finish(columns, [])
    finally:
        sink.discard()


def arrow_type(trino_type: str) -> pa.DataType:
    t = trino_type.lower()
    simple = {"boolean": pa.bool_(), "tinyint": pa.int8(), "smallint": pa.int16(), "integer": pa.int32(),
              "bigint": pa.int64(), "real": pa.float32(), "double": pa.float64(), "date": pa.date32(),
              "varbinary": pa.binary()}
    if t in simple:
        return simple[t]
    if m := re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", t):
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    if t.startswith("timestamp"):
        return pa.timestamp("us", tz="UTC" if "with time zone" in t else None)
    if t.startswith("time") and "with time zone" not in t:
        return pa.time64("us")
    return pa.string()  # varchar, char, json, uuid, arrays, maps, rows, intervals: as text


def batch(schema: pa.Schema, rows: list[list[Any]]) -> pa.RecordBatch:
    arrays = []
    for i, field in enumerate(schema):
        values = [r[i] for r in rows]
        if pa.types.is_string(field.type):
            values = [v if v is None or isinstance(v, str) else (orjson.dumps(v, default=str).decode()
                                                                 if isinstance(v, list | dict) else str(v))
                      for v in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
