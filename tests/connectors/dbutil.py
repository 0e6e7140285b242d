"""Small helpers the connector tests use to look at a database directly (not through the connectors)."""

from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from typing import Any

import psycopg


def is_pg(url: str) -> bool:
    return url.startswith("postgresql")


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    if is_pg(url):
        with psycopg.connect(url) as conn:
            return conn.execute(sql).fetchall()
    with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as lite:
        return lite.execute(sql).fetchall()


def execute(url: str, sql: str) -> None:
    if is_pg(url):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql)
        return
    lite = sqlite3.connect(url.removeprefix("sqlite:///"))
    with lite:
        lite.execute(sql)
    lite.close()


def content_hash(url: str, table: str) -> str:
    """sha256 of every row of ``table`` in id order, as the database renders it."""
    digest = hashlib.sha256()
    if is_pg(url):
        statement = f'COPY (SELECT * FROM "{table}" ORDER BY id) TO STDOUT'
        with psycopg.connect(url) as conn, conn.cursor() as cur, cur.copy(statement) as copy:
            for chunk in copy:
                digest.update(chunk)
        return digest.hexdigest()
    lite = sqlite3.connect(url.removeprefix("sqlite:///"))
    for row in lite.execute(f'SELECT * FROM "{table}" ORDER BY id'):
        digest.update(repr(row).encode())
    lite.close()
    return digest.hexdigest()
