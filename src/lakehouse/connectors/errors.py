"""Errors raised by source connectors.

Callers (the ingest phase, the CLI) need one distinction only: may a retry help?
``SourceUnavailable`` says yes (the server is down, refused the connection, the database or file is
missing); ``SourceError`` says no (an unknown table or column, an unsupported URL, a refused seed).
Both carry a one-line ``message`` fit for a CLI error line or a phase failure, never a driver
traceback.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class: ``message`` is one line; ``retryable`` tells a worker whether to retry."""

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SourceUnavailable(ConnectorError):
    """The source cannot be reached now (connection refused, timeout, missing database): retryable."""

    retryable = True


class SourceError(ConnectorError):
    """The request is wrong (unknown table or column, unsupported URL): not retryable."""


class SeedError(SourceError):
    """``seed`` refused to run (the Odoo tables already exist and ``reset`` was not given)."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's text (driver messages are often multi-line)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
