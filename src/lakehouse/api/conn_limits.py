"""Limits below ASGI that uvicorn lacks: a request-header deadline, a body read timeout and a hard
connection cap. Without them a client holds a connection (and a file descriptor) forever by sending
a request line and never finishing its headers (slowloris); 1,000 such connections were all kept.

Like nginx's ``client_header_timeout`` and ``client_body_timeout``: the headers of a request must be
complete within ``header_timeout_s`` of the connection opening (or, on a kept-alive connection, of
the request's first byte); while a body is read, each read may wait at most ``body_timeout_s``. A
connection beyond ``max_connections`` gets a 503 and is closed at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("lakehouse.server")

_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
         b"content-length: 20\r\nconnection: close\r\nretry-after: 1\r\n\r\ntoo many connections")


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with read deadlines and a connection cap (set per server by
    ``protocol_class``)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = False

    # --- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            log.warning("connection refused: %d connections open (LAKEHOUSE_MAX_CONNECTIONS)",
                        len(self.connections) - 1)
            transport.write(_BUSY)
            transport.close()
            return
        self._awaiting_headers = True
        self._arm(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # --- parser callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._awaiting_headers:  # a further request on a kept-alive connection: its first byte
            self._awaiting_headers = True
            self._arm(self.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._arm(self.body_timeout_s)  # until on_message_complete (at once for a request without body)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._arm(self.body_timeout_s)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # --- the timer ----------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # the server stopped reading (back-pressure), not the client
            self._arm(self.body_timeout_s)
            return
        what = "request headers" if self._awaiting_headers else "request body"
        log.info("closing a connection: %s not received in time", what,
                 extra={"client": self.client[0] if self.client else None})
        self.transport.close()


def protocol_class(header_timeout_s: float, body_timeout_s: float,
                   max_connections: int | None) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for one server (uvicorn instantiates it per connection)."""
    return type("LakehouseHttpProtocol", (LimitedHttpToolsProtocol,), {
        "header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s,
        "max_connections": max_connections})
