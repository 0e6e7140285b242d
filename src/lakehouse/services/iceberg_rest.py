"""The Iceberg REST catalog's rules: who may see and change which namespaces and tables.

Served at ``/iceberg/v1/…`` (api/iceberg_rest.py); the reference is docs/iceberg-rest.md. The store is
pyiceberg's SQL catalog in the metadata database (store/iceberg_catalog.py): tables that pipelines
write are visible over REST and tables created over REST are visible to pipelines.

* **Prefix = workspace.** ``GET /v1/config?warehouse=<workspace>`` answers ``prefix=<workspace>``;
  every other call names it (``/v1/<workspace>/namespaces/…``). A workspace the caller is not a
  member of answers 404, exactly like one that does not exist.
* **Namespaces.** Within a workspace a client sees one-level namespaces: the nine medallion ones
  (``bronze_dev`` … ``gold_prod``, always present, never dropped) and any it creates (lowercase
  letters, digits and ``_``, starting with a letter, no ``__``). In the store they are
  ``<workspace>__<name>`` (the bare name in the ``default`` workspace), as lake/catalog.py names them.
* **Rights.** Reads need ``read`` in the workspace; creating, committing, renaming, registering and
  dropping need ``catalog.write``. Executor tokens may use the catalog only for the run whose lease
  they present (header ``X-Lakehouse-Lease: <run_id>:<lease_token>``): that run's workspace, and the
  medallion namespaces of its environment.
* **Locations.** Table locations, metadata files to register, write paths set in properties and the
  manifest lists of committed snapshots must lie in the workspace's part of the warehouse
  (``<warehouse>/<namespace of this workspace>/…``): a client can neither point a table at another
  workspace's files nor make the server read or purge files elsewhere.

* **Storage credentials.** ``/v1/config`` hands out where the warehouse is (``s3.endpoint``,
  ``s3.region``, ``s3.force-virtual-addressing``), never the control plane's key. When the install vends
  (``LAKEHOUSE_S3_VENDING_ROLE_ARN``, services/storage_vending.py), an executor asking under a lease with
  ``X-Iceberg-Access-Delegation: vended-credentials`` gets short-lived S3 credentials scoped to its
  run's workspace and environment: in ``/v1/config``'s overrides and in each LoadTableResult's
  ``config`` and ``storage-credentials``. People's tokens and external engines get none: they bring
  their own (docs/security.md, "Executors").
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action, Role
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.lake.catalog import CATALOG_NAME, LAYERS, catalog_for, check_table_name
from lakehouse.services import auth, workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from lakehouse.store import iceberg_catalog as store

MEDALLION: tuple[str, ...] = tuple(f"{layer}_{env}" for env in ENVIRONMENTS for layer in LAYERS)
_NS_RE = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
_SEP = "__"
MAX_PAGE = 1000
LEASE_HEADER = "x-lakehouse-lease"

# what GET /v1/config announces (the Iceberg REST spec's endpoint strings)
ENDPOINTS: tuple[str, ...] = (
    "GET /v1/{prefix}/namespaces",
    "POST /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "DELETE /v1/{prefix}/namespaces/{namespace}",
    "POST /v1/{prefix}/namespaces/{namespace}/properties",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "POST /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "DELETE /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/register",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
    "POST /v1/{prefix}/tables/rename",
    "POST /v1/{prefix}/transactions/commit",
)


# --- who is calling, and where --------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """One call's workspace and what the caller may do there."""

    principal: Principal
    workspace: str
    workspace_id: int
    environment: str | None = None  # a lease-scoped executor: only this environment's medallion namespaces

    def require(self, action: Action) -> None:
        if self.environment is not None:  # an executor acting for its lease: read and write, nothing else
            if action not in (Action.READ, Action.CATALOG_WRITE):
                raise Forbidden(f"an executor lease does not grant {action.value}", code="ForbiddenException")
            return
        try:
            self.principal.require_in(action, self.workspace_id)
        except Forbidden as exc:
            raise Forbidden(exc.message, code="ForbiddenException") from None
        except NotFound:
            raise NotFound(f"no warehouse {self.workspace!r}", code="NoSuchWarehouseException") from None

    def internal(self, name: str) -> str:
        """The store's namespace for a client's namespace name (checked first)."""
        return name if self.workspace == workspaces.DEFAULT else f"{self.workspace}{_SEP}{name}"

    def external(self, internal: str) -> str | None:
        """The client's name of a store namespace; None when it is not one of this workspace's."""
        if self.workspace == workspaces.DEFAULT:
            name = internal
        elif internal.startswith(self.workspace + _SEP):
            name = internal[len(self.workspace) + len(_SEP):]
        else:
            return None
        return name if valid_namespace(name) else None

    def visible(self, name: str) -> bool:
        return self.environment is None or name in (f"{layer}_{self.environment}" for layer in LAYERS)


def valid_namespace(name: str) -> bool:
    return bool(_NS_RE.match(name)) and _SEP not in name


def scope(ctx: Context, principal: Principal, prefix: str, lease: str | None = None) -> Scope:
    """The workspace named by the URL prefix, if the caller may use it (else 404, as if absent)."""
    try:
        ws_id = workspaces.resolve_for(ctx, principal, prefix)
    except NotFound:
        raise NotFound(f"no warehouse {prefix!r}", code="NoSuchWarehouseException") from None
    if principal.role != Role.EXECUTOR.value:
        return Scope(principal, prefix, ws_id)
    if not lease:
        raise Forbidden("executor tokens use the Iceberg catalog only for a lease they hold: send "
                        "X-Lakehouse-Lease: <run_id>:<lease_token>", code="ForbiddenException")
    from lakehouse.store import queue

    run_id, _, token = lease.partition(":")
    with ctx.db.read() as conn:
        run = queue.get_run(conn, run_id)
        held = run is not None and queue.find_lease(conn, run_id, token) is not None
    if not held or run is None or run["workspace_id"] != ws_id:
        raise Forbidden("the lease is not held or is not for this workspace", code="ForbiddenException")
    return Scope(principal, prefix, ws_id, environment=str(run["environment"]))


def authenticate(ctx: Context, bearer: str) -> Principal:
    """The principal of a bearer token: an API token, or an access token from ``/v1/oauth/tokens``."""
    from lakehouse.services import iceberg_oauth

    if bearer.startswith(iceberg_oauth.ACCESS_PREFIX):
        bearer = iceberg_oauth.api_token_of(ctx, bearer)
    try:
        return auth.authenticate_token(ctx, bearer)
    except Unauthorized as exc:
        raise Unauthorized(exc.message, code="NotAuthorizedException") from None


# --- config ---------------------------------------------------------------------------------------


def config(ctx: Context, principal: Principal, warehouse: str | None, lease: str | None = None,
           delegation: str | None = None) -> dict[str, Any]:
    """The client configuration: ``prefix`` is the workspace asked for as ``warehouse`` (default: the
    ``default`` workspace, or the caller's first one when not a member of it). An executor's lease
    asking for vended credentials (``delegation``) gets them in the overrides."""
    slug = warehouse or _home_workspace(ctx, principal)
    s = scope(ctx, principal, slug, lease)
    s.require(Action.READ)
    from lakehouse.services import iceberg_tables, storage_vending

    defaults = iceberg_tables.client_storage_properties(ctx)
    overrides = {"prefix": slug}
    if storage_vending.enabled(ctx.settings):
        defaults[storage_vending.MARK] = "true"
        if s.environment is not None and storage_vending.wanted(delegation):
            overrides = {**storage_vending.for_lease(ctx, s).config, **overrides}
    return {"defaults": defaults, "overrides": overrides, "endpoints": list(ENDPOINTS)}


def with_credentials(ctx: Context, s: Scope, result: dict[str, Any], delegation: str | None) -> dict[str, Any]:
    """A LoadTableResult with the lease's vended storage credentials (``config`` and
    ``storage-credentials``) when this install vends, the caller holds a lease and asked for them."""
    from lakehouse.services import storage_vending

    if s.environment is None or not storage_vending.enabled(ctx.settings) or not storage_vending.wanted(delegation):
        return result
    vended = storage_vending.for_lease(ctx, s)
    return {**result, "config": {**(result.get("config") or {}), **vended.config},
            "storage-credentials": vended.storage_credentials()}


def _home_workspace(ctx: Context, principal: Principal) -> str:
    listed = workspaces.list_workspaces(ctx, principal) if principal.role != Role.EXECUTOR.value else []
    slugs = [w["slug"] for w in listed]
    if not slugs or workspaces.DEFAULT in slugs:
        return workspaces.DEFAULT
    return str(sorted(slugs)[0])


# --- namespaces -----------------------------------------------------------------------------------


def namespace_name(s: Scope, parts: list[str], *, creating: bool = False) -> str:
    """The one-level namespace name of a request, checked; 404 for names that cannot exist here."""
    if len(parts) != 1 or not valid_namespace(parts[0]) or not s.visible(parts[0]):
        if creating:
            raise InvalidInput("a namespace is one level: lowercase letters, digits and _, starting with a "
                               "letter, at most 100 characters, without '__'", code="BadRequestException")
        raise NotFound(f"namespace {'.'.join(parts)!r} does not exist", code="NoSuchNamespaceException")
    return parts[0]


def _exists(conn: Any, s: Scope, name: str) -> bool:
    return name in MEDALLION or store.namespace_exists(conn, CATALOG_NAME, s.internal(name))


def require_namespace(ctx: Context, s: Scope, parts: list[str]) -> str:
    name = namespace_name(s, parts)
    if name in MEDALLION:
        return name
    catalog_for(ctx.settings)  # creates pyiceberg's tables on a fresh database
    with ctx.db.read() as conn:
        if not _exists(conn, s, name):
            raise NotFound(f"namespace {name!r} does not exist", code="NoSuchNamespaceException")
    return name


def _page(names: list[str], page_token: str | None, page_size: int | None) -> tuple[list[str], str | None]:
    if page_size is not None and not 1 <= page_size <= MAX_PAGE:
        raise InvalidInput(f"pageSize must be between 1 and {MAX_PAGE}", code="BadRequestException")
    after = decode_token(page_token) if page_token else None
    rest = [n for n in names if after is None or n > after]
    if page_size is None or len(rest) <= page_size:
        return rest, None
    page = rest[:page_size]
    return page, encode_token(page[-1])


def encode_token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("invalid pageToken", code="BadRequestException") from None


def list_namespaces(ctx: Context, s: Scope, parent: list[str] | None, page_token: str | None = None,
                    page_size: int | None = None) -> dict[str, Any]:
    s.require(Action.READ)
    if parent:  # one level only: an existing parent has no children
        require_namespace(ctx, s, parent)
        return {"namespaces": []}
    catalog_for(ctx.settings)
    starts = "" if s.workspace == workspaces.DEFAULT else s.workspace + _SEP
    with ctx.db.read() as conn:
        stored = store.namespace_names(conn, CATALOG_NAME, starts)
    names = sorted({n for n in (s.external(i) for i in stored) if n} | set(MEDALLION))
    names = [n for n in names if s.visible(n)]
    page, token = _page(names, page_token, page_size)
    out: dict[str, Any] = {"namespaces": [[n] for n in page]}
    if token:
        out["next-page-token"] = token
    return out


def create_namespace(ctx: Context, s: Scope, parts: list[str], properties: dict[str, str]) -> dict[str, Any]:
    s.require(Action.CATALOG_WRITE)
    name = namespace_name(s, parts, creating=True)
    _check_properties(properties)
    catalog_for(ctx.settings)
    with ctx.db.write() as conn:  # the medallion namespaces always exist
        created = name not in MEDALLION and not _exists(conn, s, name) and store.create_namespace(
            conn, CATALOG_NAME, s.internal(name), properties)
    if not created:
        raise Conflict(f"namespace {name!r} already exists", code="AlreadyExistsException")
    return {"namespace": [name], "properties": properties}


def load_namespace(ctx: Context, s: Scope, parts: list[str]) -> dict[str, Any]:
    s.require(Action.READ)
    name = require_namespace(ctx, s, parts)
    with ctx.db.read() as conn:
        props = store.namespace_properties(conn, CATALOG_NAME, s.internal(name))
    return {"namespace": [name], "properties": props}


def update_namespace_properties(ctx: Context, s: Scope, parts: list[str], removals: list[str],
                                updates: dict[str, str]) -> dict[str, Any]:
    s.require(Action.CATALOG_WRITE)
    name = require_namespace(ctx, s, parts)
    _check_properties(updates)
    if set(removals) & set(updates):
        raise InvalidInput("a property cannot be both removed and updated", code="UnprocessableEntityException")
    with ctx.db.write() as conn:
        current = store.namespace_properties(conn, CATALOG_NAME, s.internal(name))
        store.update_namespace_properties(conn, CATALOG_NAME, s.internal(name), removals, updates)
    return {"updated": sorted(updates), "removed": sorted(k for k in removals if k in current),
            "missing": sorted(k for k in removals if k not in current)}


def drop_namespace(ctx: Context, s: Scope, parts: list[str]) -> None:
    s.require(Action.CATALOG_WRITE)
    name = require_namespace(ctx, s, parts)
    if name in MEDALLION:
        raise Forbidden(f"{name} is a medallion namespace of the lakehouse; it cannot be dropped",
                        code="ForbiddenException")
    with ctx.db.write() as conn:
        if store.table_count(conn, CATALOG_NAME, s.internal(name)):
            raise Conflict(f"namespace {name!r} is not empty", code="NamespaceNotEmptyException")
        store.delete_namespace(conn, CATALOG_NAME, s.internal(name))


def _check_properties(props: dict[str, str]) -> None:
    for k, v in props.items():
        if not isinstance(k, str) or not isinstance(v, str) or not 0 < len(k) <= 255 or len(v) > 1000:
            raise InvalidInput("properties are strings (keys 1-255, values up to 1000 characters)",
                               code="BadRequestException")
        if k == "location":
            raise InvalidInput("namespace locations are set by the lakehouse (<warehouse>/<namespace>)",
                               code="BadRequestException")


# --- table names ----------------------------------------------------------------------------------


def table_name(name: str) -> str:
    try:
        return check_table_name(name)
    except ValueError as exc:
        raise NotFound(f"table {name!r} does not exist ({exc})", code="NoSuchTableException") from None


def list_tables(ctx: Context, s: Scope, parts: list[str], page_token: str | None = None,
                page_size: int | None = None, locations: bool = False) -> dict[str, Any]:
    """The tables of a namespace. ``locations`` (our extension, query parameter
    ``lakehouse-metadata-locations=true``; what a worker's lease catalog asks) adds each table's current
    metadata file as ``lakehouse-metadata-locations`` ({name: location}), so that a worker lists an
    environment's tables for DuckDB in one request per namespace instead of one load per table."""
    s.require(Action.READ)
    name = require_namespace(ctx, s, parts)
    if page_size is not None and not 1 <= page_size <= MAX_PAGE:
        raise InvalidInput(f"pageSize must be between 1 and {MAX_PAGE}", code="BadRequestException")
    after = decode_token(page_token) if page_token else None
    catalog_for(ctx.settings)
    with ctx.db.read() as conn:
        names = store.table_names(conn, CATALOG_NAME, s.internal(name), after=after,
                                  limit=None if page_size is None else page_size + 1)
    out: dict[str, Any] = {"identifiers": [{"namespace": [name], "name": t} for t in names[:page_size]]}
    if page_size is not None and len(names) > page_size:
        out["next-page-token"] = encode_token(names[page_size - 1])
    if locations:
        with ctx.db.read() as conn:
            out["lakehouse-metadata-locations"] = store.metadata_locations(
                conn, CATALOG_NAME, s.internal(name), names[:page_size])
    return out
