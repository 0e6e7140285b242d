"""The Iceberg catalog: pyiceberg's SQL catalog in the control plane's metadata database.

Naming (one flat Iceberg namespace per layer and environment, readable by DuckDB, Trino, Spark and
humans alike):

* Iceberg namespace ``<layer>_<env>`` — ``bronze_dev``, ``silver_stage``, ``gold_prod`` — for the
  ``default`` workspace, and ``<workspace>__<layer>_<env>`` (two underscores) for any other workspace,
  so that tables of different workspaces never share a namespace.
* In SQL (DuckDB, :mod:`lakehouse.lake.duck`) the same tables are ``bronze.x`` / ``silver.x`` /
  ``gold.x``: the schema is the layer, and the environment (and workspace) is chosen when the
  connection is opened (``dev`` unless told otherwise).
* Table locations are pyiceberg's default: ``<warehouse>/<namespace>/<table>``.

Storage (``LAKEHOUSE_WAREHOUSE``): a local folder (stored as a ``file://`` URI) or ``s3://bucket/prefix``.
For S3 the FileIO properties come from :meth:`lakehouse.settings.Settings.s3_properties`: the
``LAKEHOUSE_S3_*`` settings (docs/settings.md), falling back on the standard ``AWS_*`` variables
(``AWS_ENDPOINT_URL[_S3]``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_REGION``/``AWS_DEFAULT_REGION``). This module reads no environment variable itself: callers pass
the settings down.

Two ways to reach the catalog (docs/security.md, "Executors"):

* :func:`catalog_for` / :func:`open_catalog` — pyiceberg's SQL catalog over the metadata database. Only
  the control plane (and in-process tests) opens it.
* :mod:`lakehouse.lake.lease` — a worker's catalog: pyiceberg's REST client against the control plane's
  ``/iceberg`` endpoint, under the lease of the phase it runs. A worker never holds the database URL.

DuckDB gets the same values as an S3 secret (:func:`duckdb_s3_secret`).
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sqlalchemy.engine import make_url

from lakehouse.domain.runs import ENVIRONMENTS

CATALOG_NAME = "lakehouse"
LAYERS: tuple[str, ...] = ("bronze", "silver", "gold")
DEFAULT_WORKSPACE = "default"
_WS_SEP = "__"
_TABLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,199}$")
_WS_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

__all__ = [
    "CATALOG_NAME",
    "ENVIRONMENTS",
    "LAYERS",
    "NamespaceParts",
    "catalog_for",
    "catalog_uri",
    "check_env",
    "check_layer",
    "check_table_name",
    "check_workspace",
    "close_catalogs",
    "duckdb_s3_secret",
    "namespace",
    "open_catalog",
    "parse_namespace",
    "same_database",
    "storage_properties",
    "warehouse_uri",
]


# --- naming -------------------------------------------------------------------------------------


def check_layer(layer: str) -> str:
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {', '.join(LAYERS)}, not {layer!r}")
    return layer


def check_env(env: str) -> str:
    if env not in ENVIRONMENTS:
        raise ValueError(f"environment must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    return env


def check_table_name(name: str) -> str:
    if not _TABLE_RE.match(name):
        raise ValueError(f"table names use lowercase letters, digits and _ (start with a letter or _), "
                         f"not {name!r}")
    return name


def check_workspace(workspace: str) -> str:
    if workspace != DEFAULT_WORKSPACE and not _WS_RE.match(workspace):
        raise ValueError(f"invalid workspace slug {workspace!r}")
    return workspace


def namespace(layer: str, env: str, workspace: str = DEFAULT_WORKSPACE) -> str:
    """The Iceberg namespace of a layer in an environment (and workspace)."""
    check_layer(layer)
    check_env(env)
    base = f"{layer}_{env}"
    if workspace == DEFAULT_WORKSPACE:
        return base
    if not _WS_RE.match(workspace):
        raise ValueError(f"invalid workspace slug {workspace!r}")
    return f"{workspace}{_WS_SEP}{base}"


@dataclass(frozen=True)
class NamespaceParts:
    workspace: str
    layer: str
    env: str


def parse_namespace(ns: str) -> NamespaceParts | None:
    """The (workspace, layer, env) of a namespace made by :func:`namespace`; None for any other."""
    workspace, sep, rest = ns.rpartition(_WS_SEP)
    if not sep:
        workspace, rest = DEFAULT_WORKSPACE, ns
    elif not _WS_RE.match(workspace) or workspace == DEFAULT_WORKSPACE:
        return None
    layer, _, env = rest.partition("_")
    if layer not in LAYERS or env not in ENVIRONMENTS:
        return None
    return NamespaceParts(workspace, layer, env)


# --- storage ------------------------------------------------------------------------------------


def warehouse_uri(warehouse: str) -> str:
    """``s3://…`` as given; a local folder as an absolute ``file://`` URI (created if missing)."""
    scheme = urlparse(warehouse).scheme
    if scheme in ("s3", "s3a", "s3n", "gs", "abfs", "abfss"):
        return warehouse.rstrip("/")
    path = Path(urlparse(warehouse).path) if scheme == "file" else Path(warehouse).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path.as_uri()


def storage_properties(warehouse: str, settings: Any = None, environ: Mapping[str, str] | None = None
                       ) -> dict[str, str]:
    """pyiceberg FileIO properties for the warehouse: ``s3.*`` from ``settings``
    (:meth:`lakehouse.settings.Settings.s3_properties`, with its ``AWS_*`` fallback read from ``environ``)
    for an S3 warehouse, nothing for a local one."""
    if not warehouse.startswith(("s3://", "s3a://", "s3n://")):
        return {}
    if settings is None:
        from lakehouse.settings import Settings

        settings = Settings.model_construct()  # every S3 setting empty: the AWS_* variables decide
    return dict(settings.s3_properties(environ))


def same_database(url: str, database_url: str) -> bool:
    """Whether a source URL names the same database as ``database_url`` (same SQLite file, or same
    PostgreSQL host, port and database), whatever the driver, user or password."""
    from urllib.parse import urlsplit

    if not url or not database_url:
        return False
    a, b = urlsplit(url), urlsplit(database_url)
    kind_a, kind_b = a.scheme.split("+")[0], b.scheme.split("+")[0]
    kind_a, kind_b = ("postgresql" if k == "postgres" else k for k in (kind_a, kind_b))
    if kind_a != kind_b:
        return False
    if kind_a == "sqlite":
        return os.path.realpath((a.path.lstrip("/") and a.path[1:]) or a.path) == \
            os.path.realpath((b.path.lstrip("/") and b.path[1:]) or b.path)
    return ((a.hostname or "localhost"), a.port or 5432, a.path.strip("/")) == \
        ((b.hostname or "localhost"), b.port or 5432, b.path.strip("/"))


def duckdb_s3_secret(props: Mapping[str, str]) -> str | None:
    """A ``CREATE SECRET`` statement giving DuckDB's httpfs the catalog's S3 settings."""
    if not any(k.startswith("s3.") for k in props):
        return None
    parts = ["TYPE s3"]

    def lit(v: str) -> str:
        return "'" + v.replace("'", "''") + "'"

    if props.get("s3.access-key-id"):
        parts.append(f"KEY_ID {lit(props['s3.access-key-id'])}")
    if props.get("s3.secret-access-key"):
        parts.append(f"SECRET {lit(props['s3.secret-access-key'])}")
    if props.get("s3.session-token"):
        parts.append(f"SESSION_TOKEN {lit(props['s3.session-token'])}")
    if props.get("s3.region"):
        parts.append(f"REGION {lit(props['s3.region'])}")
    if props.get("s3.endpoint"):
        ep = urlparse(props["s3.endpoint"])
        parts.append(f"ENDPOINT {lit(ep.netloc or ep.path)}")
        parts.append(f"USE_SSL {'false' if ep.scheme == 'http' else 'true'}")
    parts.append(f"URL_STYLE {lit('vhost' if props.get('s3.force-virtual-addressing') == 'true' else 'path')}")
    return f"CREATE OR REPLACE SECRET lakehouse_s3 ({', '.join(parts)})"


# --- the catalog --------------------------------------------------------------------------------


def catalog_uri(database_url: str) -> str:
    """The plain SQLAlchemy URL pyiceberg wants for the metadata database."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if "timeout" not in url.query:
            url = url.update_query_dict({"timeout": "30"})  # wait for the control plane's writers
        return url.render_as_string(hide_password=False)
    if backend == "postgresql" and url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


_cache: OrderedDict[tuple[str, str, tuple[tuple[str, str], ...]], Any] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 16


def open_catalog(database_url: str, warehouse: str, properties: Mapping[str, str] | None = None,
                 settings: Any = None) -> Any:
    """The pyiceberg ``SqlCatalog`` named ``lakehouse`` over the metadata database (the control plane's
    own access; workers use :mod:`lakehouse.lake.lease`); cached per (database, warehouse, properties)
    so that its engine and pool are shared. Storage properties come from ``settings`` (S3)."""
    from pyiceberg.catalog.sql import SqlCatalog

    wh = warehouse_uri(warehouse)
    props = storage_properties(wh, settings) | dict(properties or {})
    uri = catalog_uri(database_url)
    key = (uri, wh, tuple(sorted(props.items())))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        last: Exception | None = None
        for _ in range(3):  # two processes creating the catalog tables at once: one retry is enough
            try:
                catalog = SqlCatalog(CATALOG_NAME, uri=uri, warehouse=wh, **props)
                break
            except Exception as exc:  # pragma: no cover - creation race on a fresh database
                last = exc
        else:  # pragma: no cover
            assert last is not None
            raise last
        _cache[key] = catalog
        while len(_cache) > _CACHE_SIZE:
            _, old = _cache.popitem(last=False)
            old.engine.dispose()
        return catalog


def catalog_for(settings: Any) -> Any:
    """The control plane's catalog of a :class:`lakehouse.settings.Settings` (SQL, metadata database)."""
    return open_catalog(settings.database_url, settings.warehouse, settings=settings)


def close_catalogs() -> None:
    """Dispose every cached catalog's engine (tests, shutdown)."""
    with _cache_lock:
        while _cache:
            _, cat = _cache.popitem()
            cat.engine.dispose()
