"""Pure pieces of the connectors: URL parsing and type mapping."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from lakehouse.connectors.arrow_types import DECIMAL, numeric_arrow_type, pg_arrow_type, sqlite_arrow_type
from lakehouse.connectors.errors import SourceError
from lakehouse.connectors.urls import parse_url


def test_parse_postgres_urls() -> None:
    url = parse_url("postgresql+psycopg://odoo:pw@db.example.com:5433/prod")
    assert url.kind == "postgres" and url.conninfo == "postgresql://odoo:pw@db.example.com:5433/prod"
    assert url.display == "postgresql://odoo@db.example.com:5433/prod" and url.dbname == "prod"
    assert parse_url("postgres://h/db").with_dbname("postgres").conninfo == "postgresql://h/postgres"


def test_parse_sqlite_urls() -> None:
    assert parse_url("sqlite:///rel/odoo.db").path == Path("rel/odoo.db")
    assert parse_url("sqlite:////abs/odoo.db").path == Path("/abs/odoo.db")
    for bad in ("sqlite:///:memory:", "sqlite://", "odoo.db", "mysql://h/db"):
        with pytest.raises(SourceError):
            parse_url(bad)


def test_numeric_mapping() -> None:
    assert numeric_arrow_type("numeric") == DECIMAL
    assert numeric_arrow_type("numeric(12,6)") == DECIMAL
    assert numeric_arrow_type("numeric(38,20)") == pa.decimal128(38, 20)
    assert numeric_arrow_type("numeric(60,2)") == pa.string()
    assert pg_arrow_type("jsonb", "jsonb") == pa.string()
    assert pg_arrow_type("_int4", "integer[]") == pa.string()
    assert pg_arrow_type("timestamptz", "timestamp with time zone") == pa.timestamp("us", tz="UTC")


@pytest.mark.parametrize(("declared", "expected"), [
    ("DECIMAL_TEXT", DECIMAL), ("NUMERIC(10,2)", DECIMAL), ("JSON_TEXT", pa.string()), ("BOOLEAN", pa.bool_()),
    ("TIMESTAMP", pa.timestamp("us")), ("DATETIME", pa.timestamp("us")), ("DATE", pa.date32()),
    ("INTEGER", pa.int64()), ("REAL", pa.float64()), ("VARCHAR", pa.string()), ("", pa.string()),
])
def test_sqlite_mapping(declared: str, expected: pa.DataType) -> None:
    assert sqlite_arrow_type(declared) == expected
