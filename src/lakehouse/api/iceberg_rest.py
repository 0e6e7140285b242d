"""The Iceberg REST catalog, mounted at ``/iceberg`` (clients use ``uri=http://host:port/iceberg``).

Its own small ASGI application, so that every answer under ``/iceberg`` — including unknown paths,
wrong methods and malformed bodies — is in the Iceberg REST spec's error model
(``{"error": {"message", "type", "code"}}``), and so that these routes stay out of our OpenAPI
document (the Iceberg project publishes theirs; docs/iceberg-rest.md lists what is served).
Routes are thin: parse, call one service, render. The rules are in services/iceberg_rest.py and
services/iceberg_tables.py.
"""

from __future__ import annotations

import base64
import logging
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import orjson
from fastapi import Body, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lakehouse.domain.principal import Principal
from lakehouse.services import iceberg_oauth, iceberg_tables
from lakehouse.services import iceberg_rest as svc
from lakehouse.services.context import Context
from lakehouse.services.errors import ServiceError, Unauthorized
from lakehouse.services.storage_vending import DELEGATION_HEADER
from lakehouse.store.db import DatabaseError, is_unavailable

log = logging.getLogger("lakehouse.iceberg")

_TYPES = {400: "BadRequestException", 401: "NotAuthorizedException", 403: "ForbiddenException",
          404: "NotFoundException", 405: "MethodNotAllowedException", 406: "NotAcceptableException",
          409: "AlreadyExistsException", 413: "RequestEntityTooLargeException", 429: "TooManyRequestsException",
          503: "ServiceUnavailableException"}


def iceberg_error(status: int, message: str, type_: str | None = None, headers: dict[str, str] | None = None
                  ) -> Response:
    """An answer in the REST spec's error model (422s of ours are the spec's 400s)."""
    status = 400 if status == 422 else status
    body = {"error": {"message": message, "type": type_ or _TYPES.get(status, "InternalServerError"),
                      "code": status}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _model(obj: Any) -> Any:
    if hasattr(obj, "model_dump_json"):  # pyiceberg's models serialise themselves (aliases, no nulls)
        return orjson.Fragment(obj.model_dump_json())
    raise TypeError(type(obj).__name__)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, default=_model), status_code=status, media_type="application/json")


def _ctx(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _principal(request: Request) -> Principal:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <API token or access token from /v1/oauth/tokens>",
                           code="NotAuthorizedException")
    return svc.authenticate(_ctx(request), token.strip())


def _scope(prefix: str, request: Request, principal: Principal = Depends(_principal)) -> svc.Scope:
    return svc.scope(_ctx(request), principal, prefix, request.headers.get(svc.LEASE_HEADER))


def _basic_credentials(header: str) -> dict[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return {}
    try:
        client_id, _, secret = base64.b64decode(value.strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return {}
    return {"client_id": unquote_plus(client_id), "client_secret": unquote_plus(secret)}


def _ns(namespace: str) -> list[str]:
    return namespace.split("\x1f")  # the spec's default separator (%1F in the path)


def _vend(request: Request, s: svc.Scope, result: dict[str, Any]) -> dict[str, Any]:
    """A LoadTableResult with the lease's vended storage credentials, when asked for and granted."""
    return svc.with_credentials(_ctx(request), s, result, request.headers.get(DELEGATION_HEADER))


def _purge(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1", "yes")


def create(ctx: Context) -> FastAPI:
    app = FastAPI(title="Iceberg REST catalog", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.ctx = ctx
    _install_errors(app)

    @app.get("/v1/config")
    def config(request: Request, warehouse: str | None = None,
               principal: Principal = Depends(_principal)) -> Response:
        return _json(svc.config(_ctx(request), principal, warehouse, request.headers.get(svc.LEASE_HEADER),
                                request.headers.get(DELEGATION_HEADER)))

    @app.post("/v1/oauth/tokens")
    async def oauth_tokens(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        form.update(_basic_credentials(request.headers.get("authorization", "")))  # RFC 6749 §2.3.1
        try:
            from starlette.concurrency import run_in_threadpool

            return _json(await run_in_threadpool(iceberg_oauth.issue, _ctx(request), form))
        except iceberg_oauth.OAuthError as exc:
            return Response(orjson.dumps({"error": exc.code, "error_description": exc.message}),
                            status_code=exc.status, media_type="application/json")

    # --- namespaces ---

    @app.get("/v1/{prefix}/namespaces")
    def list_namespaces(request: Request, s: svc.Scope = Depends(_scope), parent: str | None = None,
                        page_token: str | None = Query(None, alias="pageToken"),
                        page_size: int | None = Query(None, alias="pageSize")) -> Response:
        return _json(svc.list_namespaces(_ctx(request), s, _ns(parent) if parent else None, page_token, page_size))

    @app.post("/v1/{prefix}/namespaces")
    def create_namespace(request: Request, s: svc.Scope = Depends(_scope),
                         body: dict[str, Any] = Body(...)) -> Response:
        parts = body.get("namespace")
        props = body.get("properties") or {}
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts) or not isinstance(props, dict):
            return iceberg_error(400, "namespace is a list of strings, properties a map of strings")
        return _json(svc.create_namespace(_ctx(request), s, parts, props))

    @app.get("/v1/{prefix}/namespaces/{namespace}")
    def load_namespace(request: Request, namespace: str, s: svc.Scope = Depends(_scope)) -> Response:
        return _json(svc.load_namespace(_ctx(request), s, _ns(namespace)))

    @app.head("/v1/{prefix}/namespaces/{namespace}")
    def namespace_exists(request: Request, namespace: str, s: svc.Scope = Depends(_scope)) -> Response:
        svc.load_namespace(_ctx(request), s, _ns(namespace))
        return Response(status_code=204)

    @app.delete("/v1/{prefix}/namespaces/{namespace}")
    def drop_namespace(request: Request, namespace: str, s: svc.Scope = Depends(_scope)) -> Response:
        svc.drop_namespace(_ctx(request), s, _ns(namespace))
        return Response(status_code=204)

    @app.post("/v1/{prefix}/namespaces/{namespace}/properties")
    def update_properties(request: Request, namespace: str, s: svc.Scope = Depends(_scope),
                          body: dict[str, Any] = Body(...)) -> Response:
        removals, updates = body.get("removals") or [], body.get("updates") or {}
        if not isinstance(removals, list) or not isinstance(updates, dict):
            return iceberg_error(400, "removals is a list of keys, updates a map of strings")
        return _json(svc.update_namespace_properties(_ctx(request), s, _ns(namespace), removals, updates))

    # --- tables ---

    @app.get("/v1/{prefix}/namespaces/{namespace}/tables")
    def list_tables(request: Request, namespace: str, s: svc.Scope = Depends(_scope),
                    page_token: str | None = Query(None, alias="pageToken"),
                    page_size: int | None = Query(None, alias="pageSize"),
                    locations: bool = Query(False, alias="lakehouse-metadata-locations")) -> Response:
        return _json(svc.list_tables(_ctx(request), s, _ns(namespace), page_token, page_size, locations))

    @app.post("/v1/{prefix}/namespaces/{namespace}/tables")
    def create_table(request: Request, namespace: str, s: svc.Scope = Depends(_scope),
                     body: dict[str, Any] = Body(...)) -> Response:
        return _json(_vend(request, s, iceberg_tables.create_table(_ctx(request), s, _ns(namespace), body)))

    @app.post("/v1/{prefix}/namespaces/{namespace}/register")
    def register_table(request: Request, namespace: str, s: svc.Scope = Depends(_scope),
                       body: dict[str, Any] = Body(...)) -> Response:
        return _json(_vend(request, s, iceberg_tables.register_table(_ctx(request), s, _ns(namespace), body)))

    @app.get("/v1/{prefix}/namespaces/{namespace}/tables/{table}")
    def load_table(request: Request, namespace: str, table: str, s: svc.Scope = Depends(_scope),
                   snapshots: str = "all") -> Response:
        return _json(_vend(request, s, iceberg_tables.load_table(_ctx(request), s, _ns(namespace), table, snapshots)))

    @app.head("/v1/{prefix}/namespaces/{namespace}/tables/{table}")
    def table_exists(request: Request, namespace: str, table: str, s: svc.Scope = Depends(_scope)) -> Response:
        iceberg_tables.table_exists(_ctx(request), s, _ns(namespace), table)
        return Response(status_code=204)

    @app.post("/v1/{prefix}/namespaces/{namespace}/tables/{table}")
    def commit_table(request: Request, namespace: str, table: str, s: svc.Scope = Depends(_scope),
                     body: dict[str, Any] = Body(...)) -> Response:
        return _json(iceberg_tables.commit_table(_ctx(request), s, _ns(namespace), table, body))

    @app.delete("/v1/{prefix}/namespaces/{namespace}/tables/{table}")
    def drop_table(request: Request, namespace: str, table: str, s: svc.Scope = Depends(_scope),
                   purge_requested: str | None = Query(None, alias="purgeRequested")) -> Response:
        iceberg_tables.drop_table(_ctx(request), s, _ns(namespace), table, _purge(purge_requested))
        return Response(status_code=204)

    @app.post("/v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics")
    def report_metrics(request: Request, namespace: str, table: str, s: svc.Scope = Depends(_scope),
                       body: dict[str, Any] = Body(...)) -> Response:
        iceberg_tables.report_metrics(_ctx(request), s, _ns(namespace), table, body)
        return Response(status_code=204)

    @app.post("/v1/{prefix}/tables/rename")
    def rename_table(request: Request, s: svc.Scope = Depends(_scope), body: dict[str, Any] = Body(...)) -> Response:
        iceberg_tables.rename_table(_ctx(request), s, body)
        return Response(status_code=204)

    @app.post("/v1/{prefix}/transactions/commit")
    def commit_transaction(request: Request, s: svc.Scope = Depends(_scope),
                           body: dict[str, Any] = Body(...)) -> Response:
        iceberg_tables.commit_transaction(_ctx(request), s, body)
        return Response(status_code=204)

    return app


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service(request: Request, exc: ServiceError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        type_ = exc.code if exc.code.endswith("Exception") else None
        if request.method == "HEAD":
            return Response(status_code=400 if exc.status == 422 else exc.status, headers=headers)
        return iceberg_error(exc.status, exc.message, type_, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        first = (exc.errors() or [{"loc": (), "msg": "invalid request"}])[0]
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
        return iceberg_error(400, f"{where}: {first.get('msg')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> Response:
        return iceberg_error(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}) or None)

    @app.exception_handler(DatabaseError)
    async def _database(request: Request, exc: DatabaseError) -> Response:
        if is_unavailable(exc):
            return iceberg_error(503, "the catalog database is unavailable; repeat the request in a moment",
                                 headers={"Retry-After": "2"})
        log.error("database error", exc_info=exc, extra={"path": request.url.path})
        return iceberg_error(500, "the catalog hit an unexpected error; it is logged")

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> Response:
        log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
        return iceberg_error(500, "the catalog hit an unexpected error; it is logged")
