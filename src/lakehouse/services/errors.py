"""Errors a service raises; the edges map them to HTTP statuses or one CLI line. They are defined in
``lakehouse.domain.errors`` (``Principal`` raises them too) and re-exported here for the services and
their edges."""

from __future__ import annotations

from lakehouse.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    LeaseLost,
    NotFound,
    RateLimited,
    ServiceError,
    TooLarge,
    Unauthorized,
)

__all__ = ["Conflict", "Forbidden", "InvalidInput", "LeaseLost", "NotFound", "RateLimited", "ServiceError",
           "TooLarge", "Unauthorized"]
