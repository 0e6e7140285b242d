"""The ``dbt`` phase's trino engine: dbt-core + dbt-trino against a stand-in Trino.

No Trino server can run on this machine, so ``dbt run`` talks to a small HTTP server on 127.0.0.1
that speaks Trino's client protocol (``POST /v1/statement``, ``GET nextUri``; as in
tests/engines/test_trino.py) and keeps a toy catalog: it answers the metadata queries dbt-trino sends
(``information_schema.schemata`` / ``.tables`` / ``.columns``), ``CREATE SCHEMA``, ``CREATE TABLE … AS``
(recording the SQL; the table gets canned rows, the stand-in executes no SQL), ``ALTER TABLE … RENAME``,
``DROP`` and ``SELECT * FROM`` a table it holds. Any other statement is answered with a
Trino error and recorded in ``unanswered``, so a dbt-trino version that asks something new fails here
by name. What a real Trino adds — executing the models, the Iceberg connector writing through our
REST catalog — is not exercised; the generated profile, the source mapping, the read-back, staging and
the clean-up are.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

pytest.importorskip("dbt.adapters.trino")

from lakehouse.engines import dbt_trino
from lakehouse.handlers import dbt as handler
from lakehouse.lake import tables as lake_tables
from lakehouse.lake.catalog import catalog_for, close_catalogs
from lakehouse.settings import Settings
from lakehouse.worker.context import PhaseContext, PhaseError
from tests.http_support import JsonHandler, serving

pytestmark = pytest.mark.slow

PASSWORD = "s3cr3t-trino-pw-do-not-log"
PROJECT = {
    "dbt_project.yml": "name: t\nversion: '1.0.0'\nconfig-version: 2\nprofile: lakehouse\nmodel-paths: [models]\n"
                       "models:\n  t:\n    gold:\n      +materialized: table\n",
    "models/sources.yml": "version: 2\nsources:\n  - name: silver\n    schema: silver\n    tables:\n"
                          "      - name: sales_orders\n",
    "models/staging/open_orders.sql": "{{ config(materialized='ephemeral') }}\n"
                                      "SELECT state, amount FROM {{ source('silver', 'sales_orders') }} "
                                      "WHERE state <> 'cancel'\n",
    "models/gold/sales_by_state.sql": "SELECT state, count(*) AS n, sum(amount) AS amount "
                                      "FROM {{ ref('open_orders') }} GROUP BY state\n",
}
CANNED_COLUMNS = [("state", "varchar"), ("n", "bigint"), ("amount", "double")]
CANNED_ROWS = [["draft", 2, 30.5], ["sale", 1, 10.0]]


def _sig(type_: str) -> dict[str, Any]:
    args = [{"kind": "LONG", "value": 2147483647}] if type_ == "varchar" else []
    return {"rawType": type_, "arguments": args}


def _columns(cols: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"name": n, "type": t, "typeSignature": _sig(t)} for n, t in cols]


_NAME = r'"?(\w+)"?\."?(\w+)"?\."?(\w+)"?'


@dataclass
class ToyTrino:
    """The stand-in's catalog and what it saw."""

    url: str = ""
    schemas: set[str] = field(default_factory=lambda: {"information_schema", "silver_dev", "gold_dev"})
    tables: dict[tuple[str, str], str] = field(default_factory=dict)  # (schema, table) → the CTAS SQL
    statements: list[dict[str, str]] = field(default_factory=list)  # sql, user, catalog, schema, auth
    unanswered: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # every CREATE TABLE … AS statement

    def answer(self, sql: str) -> dict[str, Any]:
        """``{"columns": …, "data": …}`` or ``{"update": …}`` or ``{"error": …}`` for one statement."""
        s = " ".join(re.sub(r"^\s*/\*.*?\*/", "", sql, flags=re.S).split())  # without dbt's query comment
        low = s.lower()
        if "information_schema" in low and ".schemata" in low:
            if low.startswith("select count(*)"):
                name = re.search(r"schema_name = '(\w+)'", low)
                return {"columns": _columns([("_col0", "bigint")]),
                        "data": [[int(bool(name and name.group(1) in self.schemas))]]}
            return {"columns": _columns([("schema_name", "varchar")]), "data": [[x] for x in sorted(self.schemas)]}
        if low.startswith("select table_name from") and ".tables" in low:
            m = re.search(r"table_schema = '(\w+)'", low)
            return {"columns": _columns([("table_name", "varchar")]),
                    "data": [[t] for sch, t in sorted(self.tables) if m and sch == m.group(1)]}
        if "information_schema" in low and ".tables" in low:
            m = re.search(r"table_schema = '(\w+)'", low)
            rows = [["iceberg", t, sch, "table"] for sch, t in sorted(self.tables) if m and sch == m.group(1)]
            return {"columns": _columns([("database", "varchar"), ("name", "varchar"), ("schema", "varchar"),
                                         ("table_type", "varchar")]), "data": rows}
        if "information_schema" in low and ".columns" in low:
            return {"columns": _columns([("column_name", "varchar"), ("data_type", "varchar")]), "data": []}
        if m := re.match(r'create schema if not exists "?(\w+)"?\."?(\w+)"?$', low):
            self.schemas.add(m.group(2))
            return {"update": "CREATE SCHEMA"}
        if m := re.match(rf"create table {_NAME}", low):
            self.tables[(m.group(2), m.group(3))] = s
            self.created.append(s)
            return {"update": "CREATE TABLE", "columns": _columns([("rows", "bigint")]), "data": [[len(CANNED_ROWS)]]}
        if m := re.match(rf"alter table {_NAME} rename to {_NAME}$", low):
            self.tables[(m.group(5), m.group(6))] = self.tables.pop((m.group(2), m.group(3)))
            return {"update": "RENAME TABLE"}
        if m := re.match(rf"drop table (?:if exists )?{_NAME}$", low):
            self.tables.pop((m.group(2), m.group(3)), None)
            return {"update": "DROP TABLE"}
        if m := re.match(r'drop schema (?:if exists )?"?(\w+)"?\."?(\w+)"?$', low):
            self.schemas.discard(m.group(2))
            return {"update": "DROP SCHEMA"}
        if (m := re.match(rf"select \* from {_NAME}$", low)) and (m.group(2), m.group(3)) in self.tables:
            return {"columns": _columns(CANNED_COLUMNS), "data": CANNED_ROWS}
        self.unanswered.append(s)
        return {"error": f"the stand-in cannot answer: {s[:200]}"}


@pytest.fixture
def toy() -> Iterator[ToyTrino]:
    state = ToyTrino()
    answers: dict[str, dict[str, Any]] = {}

    class Handler(JsonHandler):
        def do_POST(self) -> None:
            sql = self.rfile.read(int(self.headers["Content-Length"])).decode()
            state.statements.append({"sql": sql, "user": self.headers.get("X-Trino-User", ""),
                                     "catalog": self.headers.get("X-Trino-Catalog", ""),
                                     "schema": self.headers.get("X-Trino-Schema", ""),
                                     "auth": self.headers.get("Authorization", "")})
            qid = f"q{len(state.statements)}"
            answers[qid] = state.answer(sql)
            self.send_json({"id": qid, "infoUri": f"{state.url}/ui/{qid}",
                            "nextUri": f"{state.url}/v1/statement/{qid}/0", "stats": {"state": "QUEUED"}})

        def do_GET(self) -> None:
            qid = self.path.split("/")[3]
            a = answers[qid]
            doc: dict[str, Any] = {"id": qid, "infoUri": f"{state.url}/ui/{qid}"}
            if "error" in a:
                doc.update(stats={"state": "FAILED"}, error={"message": a["error"], "errorCode": 13,
                                                             "errorName": "NOT_SUPPORTED", "errorType": "USER_ERROR"})
            else:
                doc.update(stats={"state": "FINISHED"}, **({"updateType": a["update"]} if "update" in a else {}))
                if "columns" in a:
                    doc.update(columns=a["columns"], data=a["data"])
            self.send_json(doc)

        def do_DELETE(self) -> None:
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        state.url = url
        yield state


class FakeClient:
    """The executor contract's calls a dbt phase makes: its connection for the lease, artifact uploads."""

    def __init__(self, config: dict[str, Any], secrets: dict[str, str]) -> None:
        self.config, self.secrets = config, secrets
        self.asked: list[str] = []
        self.uploads: dict[str, bytes] = {}

    def lease_connection(self, run_id: str, lease_token: str, name: str) -> dict[str, Any]:
        self.asked.append(name)
        return {"name": name, "type": "trino", "config": self.config, "secrets": self.secrets}

    def upload_artifact(self, run_id: str, phase: str, name: str, path: Path, media_type: str,
                        metadata: dict[str, Any] | None) -> dict[str, Any]:
        self.uploads[name] = path.read_bytes() + json.dumps(metadata).encode()
        return {"name": name}


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    s = Settings(home=tmp_path / "home")
    s.ensure_home()
    orders = pa.table({"order_id": [1, 2, 3], "state": ["sale", "draft", "cancel"], "amount": [10.0, 30.5, 1.0]})
    lake_tables.write_table(catalog_for(s), "silver", "dev", "sales_orders", orders)
    yield s
    close_catalogs()


def _ctx(settings: Settings, tmp_path: Path, client: FakeClient, **params: Any) -> PhaseContext:
    (tmp_path / "work").mkdir(parents=True)
    return PhaseContext(run_id="0f0e0d0c-1111-2222-3333-444455556666", phase="dbt", phase_type="dbt", attempt=1,
                        params={"engine": "trino", "connection": "warehouse_trino", "command": "run", **params},
                        input_manifest={"dbt_project": PROJECT, "connections": ["warehouse_trino"]},
                        previous_outputs={}, environment="dev", spec_slug="dbt-trino", git_sha="abc1234",
                        settings=settings, client=client,  # type: ignore[arg-type]
                        lease_token="lease", workdir_path=tmp_path / "work")


def test_the_profile_for_a_trino_connection(tmp_path: Path) -> None:
    config = {"host": "trino.internal", "port": "8443", "user": "etl", "catalog": "iceberg", "http_scheme": "https",
              "read_only_user": "analyst_ro"}
    schema = dbt_trino.scratch_schema("prod", "0F0E0D0C-1111-2222-3333-444455556666")
    assert schema == "dbt_prod_0f0e0d0c11112222"
    path = dbt_trino.write_profile(tmp_path, dbt_trino.profile(config, {"password": PASSWORD}, schema, threads=4))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    target = yaml.safe_load(path.read_text())["lakehouse"]["outputs"]["run"]
    assert target == {"type": "trino", "method": "ldap", "host": "trino.internal", "port": 8443, "user": "etl",
                      "password": PASSWORD, "database": "iceberg", "schema": schema, "threads": 4}
    # without a password: no authentication, the connection's scheme
    plain = dbt_trino.profile({"host": "h", "user": "etl"}, {}, schema)["lakehouse"]["outputs"]["run"]
    assert (plain["method"], plain["http_scheme"], plain["port"], plain["database"]) == ("none", "http", 8080,
                                                                                          "iceberg")
    assert "password" not in plain
    with pytest.raises(PhaseError, match="over https only"):
        dbt_trino.profile({"host": "h", "http_scheme": "http"}, {"password": PASSWORD}, schema)
    with pytest.raises(PhaseError, match="not a plain name"):
        dbt_trino.profile({"host": "h", "catalog": 'x"; DROP'}, {}, schema)


def test_dbt_run_on_trino_builds_in_the_scratch_schema_and_stages_the_rows(
        toy: ToyTrino, settings: Settings, tmp_path: Path) -> None:
    port = int(toy.url.rsplit(":", 1)[1])
    client = FakeClient({"host": "127.0.0.1", "port": port, "user": "etl", "catalog": "iceberg",
                         "read_only_user": "analyst_ro"}, {})
    ctx = _ctx(settings, tmp_path, client)
    out = handler.run_dbt(ctx)
    assert toy.unanswered == []
    assert client.asked == ["warehouse_trino"]
    scratch = "dbt_dev_0f0e0d0c11112222"
    [ctas] = toy.created
    # the model was built in the run's scratch schema, reading the silver table of the run's environment
    assert re.search(rf'create table "iceberg"\."{scratch}"\."sales_by_state"', ctas, re.I), ctas
    assert '"iceberg"."silver_dev"."sales_orders"' in ctas and "'cancel'" in ctas  # the ephemeral model inlined
    assert {st["user"] for st in toy.statements} == {"etl"}  # dbt writes: the connection's user, not the read-only
    assert {st["catalog"] for st in toy.statements} == {"iceberg"}
    # the rows read back from Trino are staged for publish, with lineage through the ephemeral model
    entry = out["outputs"]["gold.sales_by_state"]
    assert entry["rows"] == 2 and entry["transform"] == "sales_by_state"
    assert out["lineage"]["edges"] == [{"inputs": ["silver.sales_orders"], "outputs": ["gold.sales_by_state"]}]
    assert out["dbt"]["engine"] == "trino" and out["dbt"]["models"] == ["sales_by_state"]
    snap = lake_tables.load(catalog_for(settings), "silver", "dev", "sales_orders").metadata.current_snapshot_id
    assert out["reads"] == {"silver.sales_orders": snap}
    # the scratch schema is gone, and so is the profile
    assert scratch not in toy.schemas and toy.tables == {}
    assert not (tmp_path / "work" / "profiles.yml").exists()
    assert {"manifest.json", "run_results.json", "dbt.log"} <= set(client.uploads)


def test_a_password_stays_in_the_profile(toy: ToyTrino, settings: Settings, tmp_path: Path) -> None:
    """With a password dbt-trino speaks https, which the stand-in (http only) cannot answer: the phase
    fails, and the password is nowhere in its error, events or artifacts, and its profile is removed."""
    port = int(toy.url.rsplit(":", 1)[1])
    client = FakeClient({"host": "127.0.0.1", "port": port, "user": "etl", "http_scheme": "https"},
                        {"password": PASSWORD})
    ctx = _ctx(settings, tmp_path, client)
    with pytest.raises(PhaseError) as exc:
        handler.run_dbt(ctx)
    events, _ = ctx.drain()
    assert PASSWORD not in str(exc.value) and PASSWORD not in json.dumps(events, default=str)
    assert client.uploads and all(PASSWORD.encode() not in body for body in client.uploads.values())
    assert not (tmp_path / "work" / "profiles.yml").exists()
    assert toy.tables == {}


def test_engine_and_connection_are_checked(settings: Settings, tmp_path: Path) -> None:
    client = FakeClient({"host": "127.0.0.1"}, {})
    with pytest.raises(PhaseError, match=r"params\.engine is one of duckdb, trino"):
        handler.run_dbt(_ctx(settings, tmp_path / "a", client, engine="spark"))
    with pytest.raises(PhaseError, match=r"params\.connection must name a Trino connection"):
        handler.run_dbt(_ctx(settings, tmp_path / "b", client, connection=None))
