"""Errors the domain and the services raise (``Principal.require`` among them); the edges map them to
HTTP statuses or one CLI line. Pure: no I/O, no framework. ``lakehouse.services.errors`` re-exports them."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details


class InvalidInput(ServiceError):
    status = 422
    code = "invalid"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class LeaseLost(Conflict):
    code = "lease_lost"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class TooLarge(ServiceError):
    status = 413
    code = "too_large"


class RateLimited(ServiceError):
    status = 429
    code = "rate_limited"
