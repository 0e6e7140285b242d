"""The ``trino`` target of a dbt phase (``params.engine: trino``): dbt-trino on a Trino cluster that sees
our tables through its Iceberg catalog (``deploy/trino/catalog/iceberg.properties``: our REST catalog,
one workspace per Trino catalog, the S3 warehouse).

* :func:`lease_connection` fetches the Trino connection the phase names (``params.connection``, a
  connection of type ``trino`` the run declared) for this lease; its secrets stay in memory and in
  the profile file only.
* :func:`profile` is dbt-trino's ``profiles.yml`` target for it: ``host``, ``port``, ``user`` (the
  connection's user, not its read-only one: dbt writes), ``database`` = the connection's catalog
  (``iceberg``), ``schema`` = the run's scratch schema (:func:`scratch_schema`), ``http_scheme``, and
  with a password ``method: ldap`` (Trino's password authentication, over https only). The handler
  writes it with mode 0600 into the phase's workdir and removes it when dbt has run.
* Models are built in the scratch schema ``dbt_<env>_<run>`` of the workspace's catalog, never in a
  layer's schema: the handler reads them back (:meth:`TrinoSession.read`) and stages them, so
  ``publish`` commits them atomically after the dbt tests passed, exactly as on DuckDB; the scratch
  schema is dropped afterwards (:meth:`TrinoSession.drop_scratch`).
* :func:`source_macro` maps ``source('silver', 'x')`` (a source with ``schema: silver``) to Trino's
  ``<catalog>.silver_<env>.x``, so one project runs on both targets unchanged.

Trino reads the inputs' current snapshots when each model runs (not pinned to one snapshot for the
whole phase as on DuckDB); the manifest's ``reads`` are the snapshots current when the phase started.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from lakehouse.worker.context import PhaseContext, PhaseError

INSTALL_HINT = "the dbt phase's trino engine needs dbt-trino: pip install 'lakehouse[dbt]'"
LAYERS = ("bronze", "silver", "gold")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def lease_connection(ctx: PhaseContext, name: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """``(config, secrets)`` of the Trino connection ``name`` for this lease (``CONNECTION_USED`` in the
    run's trail); the run must have declared it."""
    from lakehouse.handlers.trino import lease_trino

    if not isinstance(name, str) or not name:
        raise PhaseError("params.connection must name a Trino connection the run declared (engine trino)",
                         retryable=False)
    return lease_trino(ctx, name)

def scratch_schema(env: str, run_id: str) -> str:
    """The run's own schema in the workspace's Trino catalog, where dbt builds the models."""
    return f"dbt_{env}_{re.sub(r'[^a-z0-9]', '', run_id.lower())[:16]}"


def profile(config: dict[str, Any], secrets: dict[str, str], schema: str, threads: int = 1) -> dict[str, Any]:
    """dbt-trino's target for a Trino connection (see the module's doc)."""
    if not config.get("host"):
        raise PhaseError("the Trino connection has no host", retryable=False)
    scheme = str(config.get("http_scheme") or "http")
    if scheme not in ("http", "https"):
        raise PhaseError(f"the Trino connection's http_scheme is http or https, not {scheme!r}", retryable=False)
    catalog = str(config.get("catalog") or "iceberg")
    if not _IDENT.match(catalog):
        raise PhaseError(f"the Trino connection's catalog {catalog!r} is not a plain name", retryable=False)
    target: dict[str, Any] = {
        "type": "trino", "host": str(config["host"]), "port": int(config.get("port") or 8080),
        "user": str(config.get("user") or "lakehouse"), "database": catalog, "schema": schema,
        "threads": threads, "http_scheme": scheme}
    password = secrets.get("password")
    if password:
        if scheme != "https":
            raise PhaseError("the Trino connection has a password but http_scheme http: Trino accepts passwords "
                             "over https only", retryable=False)
        target.update(method="ldap", password=password)
        target.pop("http_scheme")  # dbt-trino's ldap method is https always
    else:
        target["method"] = "none"
    return {"lakehouse": {"target": "run", "outputs": {"run": target}}}


def write_profile(folder: Path, doc: dict[str, Any]) -> Path:
    """``folder/profiles.yml``, readable by this user only (it may hold the connection's password)."""
    import yaml

    path = folder / "profiles.yml"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(yaml.safe_dump(doc, sort_keys=True))
    return path


def source_macro(env: str) -> str:
    """A project macro overriding ``source()``: a source whose schema is one of our layers reads the
    layer's namespace of the run's environment (``silver`` → ``silver_dev``)."""
    return ("{#- written by the lakehouse worker for dbt-trino: our layers are <layer>_<env> schemas -#}\n"
            "{% macro source(source_name, table_name) %}\n"
            "  {%- set rel = builtins.source(source_name, table_name) -%}\n"
            f"  {{%- if rel.schema in {LAYERS!r} -%}}\n"
            f"    {{%- do return(rel.incorporate(path={{'schema': rel.schema ~ '_{env}'}})) -%}}\n"
            "  {%- endif -%}\n"
            "  {%- do return(rel) -%}\n"
            "{% endmacro %}\n")


def add_source_macro(project: Path, env: str) -> None:
    """Write :func:`source_macro` into the project's first macro folder."""
    import yaml

    doc = yaml.safe_load((project / "dbt_project.yml").read_text()) or {}
    paths = doc.get("macro-paths") or ["macros"]
    folder = project / str(paths[0])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "_lakehouse_trino_sources.sql").write_text(source_macro(env))


class TrinoSession:
    """The handler's own Trino session (same user and catalog as dbt's): incremental models' starting
    rows, reading the built models back, dropping the scratch schema."""

    def __init__(self, config: dict[str, Any], secrets: dict[str, str], schema: str, source: str) -> None:
        try:
            import trino
        except ImportError:
            raise PhaseError(INSTALL_HINT, retryable=False) from None
        password = secrets.get("password")
        scheme = str(config.get("http_scheme") or "http")
        self.catalog = str(config.get("catalog") or "iceberg")
        self.schema = schema
        self.conn = trino.dbapi.connect(
            host=str(config["host"]), port=int(config.get("port") or 8080), user=str(config.get("user") or "lakehouse"),
            catalog=self.catalog, http_scheme="https" if password else scheme, source=source, request_timeout=300.0,
            auth=trino.auth.BasicAuthentication(str(config.get("user") or "lakehouse"), password) if password
            else None)

    def name(self, schema: str, table: str) -> str:
        for part in (schema, table):
            if not _IDENT.match(part):
                raise PhaseError(f"{part!r} is not a plain Trino name", retryable=False)
        return f'"{self.catalog}"."{schema}"."{table}"'

    def execute(self, sql: str) -> list[Any]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            return list(cur.fetchall())
        finally:
            cur.close()

    def seed_incremental(self, alias: str, layer: str, env: str, table: str) -> None:
        """Start an incremental model from its published table (``{{ this }}`` holds those rows)."""
        self.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.catalog}"."{self.schema}"')
        self.execute(f"CREATE TABLE {self.name(self.schema, alias)} AS "
                     f"SELECT * FROM {self.name(f'{layer}_{env}', table)}")

    def read(self, node: dict[str, Any]) -> Any:
        """A built model's rows as an Arrow table."""
        import pyarrow as pa

        from lakehouse.services.sql_trino import arrow_type, batch

        cur = self.conn.cursor()
        try:
            cur.execute(f"SELECT * FROM {self.name(self.schema, str(node.get('alias') or node['name']))}")
            rows = cur.fetchall()
            schema = pa.schema([(d[0], arrow_type(str(d[1]))) for d in (cur.description or [])])
        finally:
            cur.close()
        return pa.Table.from_batches([batch(schema, [list(r) for r in rows])], schema=schema)

    def drop_scratch(self) -> None:
        """Drop the run's scratch schema and what dbt built in it (best effort: a left-over schema is
        named after its run)."""
        self.name(self.schema, "t")  # a plain name, safe in the literal below
        listed = self.execute(f'SELECT table_name FROM "{self.catalog}".information_schema.tables '
                              f"WHERE table_schema = '{self.schema}'")  # empty when dbt never created it
        for (table,) in listed:
            self.execute(f"DROP TABLE IF EXISTS {self.name(self.schema, str(table))}")
        self.execute(f'DROP SCHEMA IF EXISTS "{self.catalog}"."{self.schema}"')

    def close(self) -> None:
        self.conn.close()
