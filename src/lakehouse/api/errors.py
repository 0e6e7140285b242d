"""One JSON error shape for every failure: {"error": {"code", "message", "details"}}.

Faults below the API become clear answers, never ``internal_error``: the database away (a restart,
a terminated connection) is a 503 with ``Retry-After``; a value the database cannot store (a NUL
character in text, a number past bigint) is a 422; a full artifact store is a 507 naming the store, an
artifact store on S3 that fails or refuses us a 503 naming it (``Retry-After`` when it may pass).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lakehouse.api.schemas import ErrorResponse
from lakehouse.domain.rules import CODES as rule_codes
from lakehouse.lake.blobstore import StoreFull, StoreUnavailable
from lakehouse.services.errors import ServiceError
from lakehouse.store.db import DatabaseError, StatementFailed, first_line, is_unavailable, refusal

log = logging.getLogger("lakehouse.api")

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
               422: "invalid", 429: "rate_limited"}
RETRY_AFTER_S = 2  # what a client should wait before repeating a request the database could not serve
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
ORJSON_BIG_INT = "Integer exceeds 64-bit range"  # orjson's TypeError for an int it cannot encode
STORE_FULL_RETRY_S = 60  # what a client is told to wait after a 507 (someone must free space first)

# The answers of the handlers below, as OpenAPI ``responses`` entries (the error shape, Retry-After).
RETRY_AFTER: dict[str, Any] = {"Retry-After": {
    "schema": {"type": "integer", "minimum": 0}, "description": "seconds to wait before repeating the request"}}
_DB_AWAY = "`database_unavailable`: the metadata database is away (a restart, a dropped connection)"
# every route (the app's ``responses``): the database may be away whatever the route
UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {
    "model": ErrorResponse, "headers": RETRY_AFTER,
    "description": f"{_DB_AWAY}; repeat after `Retry-After` seconds"}}
# routes that read or write the artifact store (uploads, downloads, phase query results)
STORE_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "headers": RETRY_AFTER, "description": (
        f"{_DB_AWAY}; or the artifact store failing (`artifact_store_unavailable`, with `Retry-After`: S3 "
        "answering 5xx or unreachable) or refusing the server (`artifact_store_misconfigured`, no "
        "`Retry-After`: no such bucket, credentials refused — an operator must act); `details.store` "
        "names the store")},
    507: {"model": ErrorResponse, "headers": RETRY_AFTER, "description": (
        "`insufficient_storage`: the artifact store (its size cap) or the server's disk is full; "
        "`details.store` (or `details.file`) names it; nothing was stored")},
}
# routes that create runs: a queue cap in ``reject`` mode (services/caps.py)
QUEUE_CAP: dict[int | str, dict[str, Any]] = {429: {
    "model": ErrorResponse, "headers": RETRY_AFTER,
    "description": "`queue_cap`: the workspace's queue cap is reached (`details` names the cap); "
                   "repeat after `Retry-After` seconds"}}
# routes that run SQL on the server's pool (services/sql_pool.py)
SQL_BUSY: dict[int | str, dict[str, Any]] = {429: {
    "model": ErrorResponse, "headers": RETRY_AFTER,
    "description": "too many queries running or queued for the user, the workspace or the server "
                   "(`details.cap` names the limit); repeat after `Retry-After` seconds"}}


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details}}, status_code=status,
                        headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 429 and isinstance(exc.details, dict) and "retry_after_s" in exc.details:
            headers = {"Retry-After": str(int(exc.details["retry_after_s"]))}  # a queue cap (services/caps.py)
        return error_response(exc.status, exc.code, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "malformed_json", "the request body is not valid JSON",
                                  [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors])
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
        first = details[0] if details else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"][1:]) or "body"
        code = first.get("type") if first.get("type") in rule_codes else "validation_error"  # domain/rules.py
        return error_response(422, str(code), f"{where}: {first['msg']}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # keep the exception's headers: a 405 carries ``Allow`` (RFC 9110), a 401 ``WWW-Authenticate``
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "error"), str(exc.detail),
                               headers=headers or None)

    @app.exception_handler(DatabaseError)
    async def _database(request: Request, exc: DatabaseError) -> JSONResponse:
        answer = database_error(exc, request.url.path)
        return answer if answer is not None else _internal(request, exc)

    @app.exception_handler(StatementFailed)
    async def _statement(request: Request, exc: StatementFailed) -> JSONResponse:
        # a value SQLAlchemy could not bind: answered as the value's own error would be
        if isinstance(exc.orig, OverflowError):
            return await _overflow(request, exc.orig)
        if isinstance(exc.orig, TypeError):
            return await _type_error(request, exc.orig)
        return _internal(request, exc)

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        # SQLite's driver refuses integers past 64 bits before any statement runs (ids in paths, params)
        log.info("integer out of range", extra={"path": request.url.path, "error": str(exc)})
        return error_response(422, "out_of_range", "a number in the request is out of range (64-bit integers)")

    @app.exception_handler(TypeError)
    async def _type_error(request: Request, exc: TypeError) -> JSONResponse:
        if str(exc) == ORJSON_BIG_INT:  # a JSON document (a manifest, params) holding an integer past 64 bits
            log.info("integer out of range in a JSON value", extra={"path": request.url.path})
            return error_response(422, "out_of_range", "a JSON value holds an integer out of the 64-bit range, "
                                  "which cannot be stored; send it as a string")
        return _internal(request, exc)

    @app.exception_handler(StoreFull)
    async def _store_full(request: Request, exc: StoreFull) -> JSONResponse:
        log.error("artifact store full", extra={"path": request.url.path, "error": str(exc)})
        return error_response(507, "insufficient_storage", str(exc), {"store": exc.store},
                              {"Retry-After": str(STORE_FULL_RETRY_S)})

    @app.exception_handler(StoreUnavailable)
    async def _store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        # S3 answering 5xx or unreachable (transient: Retry-After), or a missing bucket / refused credentials
        log.error("artifact store unavailable", extra={"path": request.url.path, "error": str(exc)})
        return error_response(503, exc.code, str(exc), {"store": exc.store, "transient": exc.transient},
                              {"Retry-After": str(RETRY_AFTER_S)} if exc.transient else None)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno in _FULL:
            where = exc.filename or "the server's disk"
            log.error("disk full", extra={"path": request.url.path, "error": str(exc)})
            return error_response(507, "insufficient_storage", f"no space left to write {where}",
                                  {"file": str(exc.filename) if exc.filename else None},
                                  {"Retry-After": str(STORE_FULL_RETRY_S)})
        return _internal(request, exc)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        return _internal(request, exc)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's own 405 names only the first route's)."""
    from starlette._utils import get_route_path  # where starlette.routing takes it from

    path = get_route_path(request.scope)
    methods: set[str] = set()
    for route in _routes(request.app.router.routes):
        if route.path_regex.match(path):
            methods |= set(route.methods)
    return sorted(methods)


def _routes(routes: Any) -> Iterator[Any]:
    """Routes with methods, through included routers (FastAPI wraps them) and mounts."""
    for route in routes:
        if getattr(route, "methods", None) and hasattr(route, "path_regex"):
            yield route
        nested = getattr(route, "routes", None) or getattr(getattr(route, "original_router", None), "routes", None)
        if nested:
            yield from _routes(nested)


def _internal(request: Request, exc: BaseException) -> JSONResponse:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return error_response(500, "internal_error", "the server hit an unexpected error; it is logged")


def database_error(exc: DatabaseError, path: str = "") -> JSONResponse | None:
    """The answer to a database error, or None when it is a bug (a 500)."""
    if is_unavailable(exc):
        log.warning("database unavailable", extra={"path": path, "error": first_line(exc)})
        return error_response(503, "database_unavailable",
                              "the metadata database is unavailable; repeat the request in a moment",
                              {"retry_after_s": RETRY_AFTER_S}, {"Retry-After": str(RETRY_AFTER_S)})
    refused = refusal(exc)
    if refused is None:
        return None
    code, text = refused
    log.info("value refused by the database", extra={"path": path, "error": text})
    message = {"nul_character": "a text value contains a NUL (\\u0000) character, which cannot be stored",
               "out_of_range": f"a number in the request is out of range: {text}"}.get(
        code, f"a value was refused by the database: {text}")
    return error_response(422, code, message, None)
