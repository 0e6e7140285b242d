"""Request limits: the size limit as pure ASGI middleware (413 in the JSON error shape, body never
buffered) and the bounds of path ids (a 64-bit row id), stated in the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Path

MAX_ROW_ID = 2**63 - 1  # ids are 64-bit integers on both databases
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="a row id: a positive 64-bit integer")]

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
        answered = False

        async def limited() -> Any:
            nonlocal seen, answered
            if answered:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    answered = True
                    await _too_large(send, limit)
                    return {"type": "http.disconnect"}  # the app stops reading; its answer is dropped
            return message

        async def guarded(message: Any) -> None:
            if not answered:
                await send(message)

        await self.app(scope, limited, guarded)


async def _too_large(send: Any, limit: int) -> None:
    body = orjson.dumps({"error": {"code": "too_large", "message": f"request body over {limit} bytes",
                                   "details": {"limit_bytes": limit}}})
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
