"""How a process reaches the lake: the control plane directly, or a worker under the lease of a phase.

A :class:`Lake` is built once at a process's edge and hands each phase its catalog:

* :class:`RestLake` — what ``lakehouse worker`` uses. The catalog of a phase is pyiceberg's REST client
  (:class:`LeaseCatalog`) against the control plane's Iceberg REST endpoint (``<server>/iceberg``),
  authenticated by the executor token and scoped by that phase's lease (header
  ``X-Lakehouse-Lease: <run_id>:<lease_token>``): it sees the run's workspace and the medallion
  namespaces of the run's environment, and nothing once the lease has ended. The worker holds no
  database URL and no key; data files are read and written with the worker's own storage settings
  (``LAKEHOUSE_WAREHOUSE`` and the ``LAKEHOUSE_S3_*``/``AWS_*`` credentials) — unless the control plane
  vends credentials (services/storage_vending.py): then each lease catalog asks for its lease's
  short-lived S3 credentials, scoped to the run's workspace and environment, and uses them for
  pyiceberg's FileIO and DuckDB's S3 secret instead of the worker's own (which it then need not have).
  One HTTP connection pool and one ``/v1/config`` answer serve every phase of the worker.
* :class:`DirectLake` — pyiceberg's SQL catalog over the metadata database (:func:`catalog_for`). Only
  for code that *is* the control plane, and for in-process tests that drive handlers without HTTP.

The staging folder of a run (``<warehouse>/_staging/<workspace>/<environment>/<run_id>/``,
handlers/staging.py, :func:`staging_prefix`) is reached with the same credentials as the tables: the
lease's vended ones when the control plane vends (their policy covers that prefix), else the worker's own.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol
from urllib.parse import unquote

from pyiceberg.catalog.rest import RestCatalog

from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.lake.catalog import (
    CATALOG_NAME,
    LAYERS,
    catalog_for,
    check_env,
    check_layer,
    check_workspace,
)

LEASE_HEADER = "X-Lakehouse-Lease"
LOCATIONS_PARAM = "lakehouse-metadata-locations"  # our extension of "list tables" (docs/iceberg-rest.md)
LOCATIONS_FIELD = "lakehouse-metadata-locations"
VENDED_MARK = "lakehouse.vended-credentials"  # /v1/config's defaults say the control plane vends
EXPIRES_AT_MS = "s3.session-token-expires-at-ms"
REFRESH_BEFORE_S = 300  # vended credentials with less left than this are asked for again
STAGING = "_staging"  # the warehouse folder of staged outputs (handlers/staging.py)


def staging_prefix(warehouse: str, workspace: str, environment: str) -> str:
    """The staging prefix of one workspace and environment, ``<warehouse>/_staging/<ws>/<env>/``: runs
    stage below it in ``<run_id>/``, and the credentials vended for its leases cover it."""
    return f"{warehouse.rstrip('/')}/{STAGING}/{check_workspace(workspace)}/{check_env(environment)}/"


class Lake(Protocol):
    def catalog(self, run_id: str, lease_token: str, workspace: str) -> Any:
        """The catalog a phase of ``run_id`` (held under ``lease_token``, in ``workspace``) uses."""


class DirectLake:
    """The control plane's own access (SQL catalog in the metadata database)."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def catalog(self, run_id: str, lease_token: str, workspace: str) -> Any:
        return catalog_for(self.settings)


class RestLake:
    """A worker's access: one REST catalog per phase, under that phase's lease."""

    def __init__(self, server: str, token: str, settings: Any = None) -> None:
        import requests.adapters

        self.uri = server.rstrip("/") + "/iceberg"
        self.token = token
        self.properties = storage_properties_for_worker(settings)
        self.adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=8)  # shared by all phases
        self._config: tuple[dict[str, str], set[Any] | None] | None = None
        self._lock = threading.Lock()

    def catalog(self, run_id: str, lease_token: str, workspace: str) -> LeaseCatalog:
        return LeaseCatalog(self, check_workspace(workspace), f"{run_id}:{lease_token}")

    def config(self, catalog: LeaseCatalog) -> tuple[dict[str, str], set[Any] | None]:
        """``/v1/config``'s defaults and endpoints, asked once per worker (under the first lease)."""
        with self._lock:
            if self._config is None:
                from pyiceberg.catalog.rest import ConfigResponse, Endpoints
                from pyiceberg.catalog.rest.response import _handle_non_200_response
                from requests import HTTPError

                session = catalog._create_session()
                response = session.get(catalog.url(Endpoints.get_config, prefixed=False),
                                       params={"warehouse": catalog.workspace})
                try:
                    response.raise_for_status()
                except HTTPError as exc:
                    _handle_non_200_response(exc, {})
                answer = ConfigResponse.model_validate_json(response.text)
                self._config = (dict(answer.defaults or {}), answer.endpoints)
            return self._config


def storage_properties_for_worker(settings: Any) -> dict[str, str]:
    """The worker's own S3 properties (settings, else ``AWS_*``) when it has any or its warehouse is on
    S3; nothing for a local warehouse. Never sent anywhere: pyiceberg's FileIO and DuckDB use them."""
    if settings is None:
        return {}
    props = dict(settings.s3_properties())
    if str(settings.warehouse).startswith(("s3://", "s3a://", "s3n://")) or set(props) - {
            "s3.force-virtual-addressing"}:
        return props
    return {}


class LeaseCatalog(RestCatalog):
    """pyiceberg's ``RestCatalog`` for one phase: the ``lakehouse`` catalog of one workspace (the REST
    prefix), with the executor token and the phase's lease on every request. ``workspace`` tells
    lake/tables.py that namespaces here are the workspace's own names (``bronze_dev``)."""

    def __init__(self, lake: RestLake, workspace: str, lease: str) -> None:
        self._lake = lake
        self.workspace = workspace
        super().__init__(CATALOG_NAME, **{
            "uri": lake.uri, "token": lake.token, "warehouse": workspace,
            f"header.{LEASE_HEADER}": lease, **lake.properties})

    def _fetch_config(self) -> None:
        from pyiceberg.catalog.rest import (
            DEFAULT_ENDPOINTS,
            DEFAULT_NAMESPACE_SEPARATOR,
            NAMESPACE_SEPARATOR_PROPERTY,
        )

        defaults, endpoints = self._lake.config(self)
        config = dict(defaults)
        config.update(self.properties)  # the worker's own storage settings win over the server's hints
        config["prefix"] = self.workspace
        self._vends = defaults.get(VENDED_MARK) == "true"
        if self._vends:  # this lease's credentials win over the worker's own
            config.update(self._vended())
        self.properties = config
        self._supported_endpoints = set(endpoints) if endpoints else set(DEFAULT_ENDPOINTS)
        self._namespace_separator = unquote(config.get(NAMESPACE_SEPARATOR_PROPERTY, DEFAULT_NAMESPACE_SEPARATOR))

    def _vended(self) -> dict[str, str]:
        """The S3 credentials vended for this lease (``/v1/config`` under it, asking for delegation)."""
        from pyiceberg.catalog.rest import Endpoints
        from pyiceberg.catalog.rest.response import _handle_non_200_response
        from requests import HTTPError

        session = getattr(self, "_session", None) or self._create_session()
        response = session.get(self.url(Endpoints.get_config, prefixed=False), params={"warehouse": self.workspace},
                               headers={"X-Iceberg-Access-Delegation": "vended-credentials"})
        try:
            response.raise_for_status()
        except HTTPError as exc:
            _handle_non_200_response(exc, {})
        overrides = dict(response.json().get("overrides") or {})
        return {k: str(v) for k, v in overrides.items() if k.startswith("s3.")}

    def refresh_credentials(self) -> None:
        """Ask for this lease's credentials again when less than :data:`REFRESH_BEFORE_S` is left (long
        phases outlive one set); tables loaded afterwards and new DuckDB connections use the new ones."""
        if not getattr(self, "_vends", False):
            return
        expires = int(self.properties.get(EXPIRES_AT_MS) or 0) / 1000
        if expires - time.time() < REFRESH_BEFORE_S:
            self.properties = {**self.properties, **self._vended()}

    def vended_storage(self) -> dict[str, str] | None:
        """This lease's vended S3 properties (asked for again near their end) for what is not a table —
        the run's staging folder — or ``None`` when the control plane does not vend."""
        if not getattr(self, "_vends", False):
            return None
        self.refresh_credentials()
        return {k: str(v) for k, v in self.properties.items() if k.startswith("s3.")}

    def _load_file_io(self, properties: Any = None, location: str | None = None) -> Any:
        self.refresh_credentials()
        return super()._load_file_io(properties or {}, location)

    def _create_session(self) -> Any:
        session = super()._create_session()
        session.mount("http://", self._lake.adapter)  # every phase's session shares one connection pool
        session.mount("https://", self._lake.adapter)
        return session

    def close(self) -> None:
        """Nothing to close: the connection pool is the worker's (closing it would end keep-alive)."""

    def medallion_tables(self, env: str | None, layer: str | None) -> list[tuple[str, str, str, str]]:
        """``(layer, env, name, metadata_location)`` of the tables of the medallion namespaces this lease
        sees, one request per layer (our list-tables extension adds the metadata locations)."""
        from pyiceberg.catalog.rest import Endpoints
        from pyiceberg.catalog.rest.response import _handle_non_200_response
        from pyiceberg.exceptions import NoSuchNamespaceError
        from requests import HTTPError

        self.refresh_credentials()  # DuckDB's S3 secret is made from the properties next
        out = []
        envs = [check_env(env)] if env is not None else list(ENVIRONMENTS)
        layers = [check_layer(layer)] if layer is not None else list(LAYERS)
        for e in envs:
            for lay in layers:
                ns = f"{lay}_{e}"
                response = self._session.get(self.url(Endpoints.list_tables, namespace=ns),
                                             params={LOCATIONS_PARAM: "true"})
                if response.status_code == 404 and env is None:
                    continue  # not this lease's environment
                try:
                    response.raise_for_status()
                except HTTPError as exc:
                    _handle_non_200_response(exc, {404: NoSuchNamespaceError})
                body = response.json()
                locations = body.get(LOCATIONS_FIELD) or {}
                for ident in body.get("identifiers") or []:
                    name = ident["name"]
                    if locations.get(name):
                        out.append((lay, e, name, str(locations[name])))
        return out

