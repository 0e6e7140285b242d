"""The rules of names and values the server enforces, stated once: the wire schemas carry them (so
the OpenAPI document shows them to clients and fuzzers) and the services check the same ones.

:func:`rule` attaches a rule's error code to a field: a value that breaks it is answered 422 with
that code (``invalid_sha256``, ``invalid_event_type``, …) rather than the generic
``validation_error``, and the field's JSON schema still shows its pattern or enum.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import ValidationError, WrapValidator
from pydantic_core import PydanticCustomError

SHA256 = r"^[0-9a-f]{64}$"  # a content hash: 64 lowercase hex characters
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"  # phase names and pipeline (spec) slugs
CAPABILITY = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"  # phase types and the capabilities executors offer
EXECUTOR_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,199}$"  # e.g. ``host-4242``, ``spark-driver-1``
WORKSPACE = r"^[a-z0-9][a-z0-9_-]{0,62}$"  # a workspace slug
TABLE = r"^[a-z][a-z0-9_]{0,62}$"  # a table or ingest-group name in a pipeline spec
NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold a NUL: refused with 422, never a 500

SHA256_RE = re.compile(SHA256)
NAME_RE = re.compile(NAME)


class Environment(StrEnum):
    DEV = "dev"
    STAGE = "stage"
    PROD = "prod"


class Layer(StrEnum):
    BRONZE = "bronze"
    SILVER = "silver"
    GOLD = "gold"


ENVIRONMENTS = tuple(e.value for e in Environment)
LAYERS = tuple(la.value for la in Layer)

CODES: set[str] = set()  # every code a rule may answer with (api/errors.py uses it as the error code)


def rule(code: str, message: str) -> WrapValidator:
    """A field validator that answers a broken rule with ``code`` and ``message`` (a 422 over HTTP);
    ``validation_error`` keeps the generic code and only words the message."""
    if code != "validation_error":
        CODES.add(code)

    def check(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(code, message) from None

    return WrapValidator(check)
