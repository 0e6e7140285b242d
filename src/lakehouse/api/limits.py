"""Request-size limit as pure ASGI middleware: 413 in the JSON error shape, body never buffered."""

from __future__ import annotations

from typing import Any

import orjson

ARTIFACT_PREFIX = "/ops/artifacts/"


class BodyLimit:
    def __init__(self, app: Any, max_json: int, max_upload: int) -> None:
        self.app = app
        self.max_json = max_json
        self.max_upload = max_upload

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = self.max_upload if (scope["method"] == "PUT" and scope["path"].startswith(ARTIFACT_PREFIX)) \
            else self.max_json
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > limit:
                        await _too_large(send, limit)
                        return
                except ValueError:
                    pass
        seen = 0
        sent_error = False

        async def limited() -> Any:
            nonlocal seen, sent_error
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    sent_error = True
                    raise _Over()
            return message

        try:
            await self.app(scope, limited, send)
        except _Over:
            await _too_large(send, limit)


class _Over(Exception):
    pass


async def _too_large(send: Any, limit: int) -> None:
    body = orjson.dumps({"error": {"code": "too_large", "message": f"request body over {limit} bytes",
                                   "details": {"limit_bytes": limit}}})
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
