"""CSRF protection for every cookie-authenticated request that changes something.

A session carries its own token; forms post it as ``csrf_token`` and htmx sends it as the
``X-CSRF-Token`` header. The login form, which has no session yet, uses a double-submit cookie.
Requests with an ``Authorization`` header (API clients) carry no ambient credentials and skip this.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FIELD = "csrf_token"
HEADER = "x-csrf-token"
MAX_FORM_BYTES = 1_048_576

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class FormTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int = MAX_FORM_BYTES) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise FormTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive callable that gives ``body`` once, then defers to the original (for disconnects)."""
    sent = False

    async def _receive() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return _receive


def token_from_form(body: bytes) -> str | None:
    values = parse_qs(body.decode("latin-1"), keep_blank_values=True).get(FIELD)
    return values[0] if values else None


def matches(given: str | None, expected: str | None) -> bool:
    return bool(given and expected and hmac.compare_digest(given.encode(), expected.encode()))
