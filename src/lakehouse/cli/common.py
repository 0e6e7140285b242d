"""Shared CLI plumbing: settings, context, JSON logs, one-line errors."""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:  # imported where used: `lakehouse sql` through the server never loads the services
    from lakehouse.services.context import Context
    from lakehouse.settings import Settings

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _redact(key: str, value: Any, secret_keys: tuple[str, ...]) -> Any:
    if any(s in key.lower() for s in secret_keys):
        return "•••••"
    return _ANSI.sub("", value) if isinstance(value, str) else value


class JsonFormatter(logging.Formatter):
    """Structured JSON log lines; values of keys that look secret are redacted, terminal colour codes
    are stripped."""

    SECRET_KEYS = ("token", "password", "secret", "authorization", "key")

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
                               "level": record.levelname.lower(), "logger": record.name,
                               "message": _ANSI.sub("", record.getMessage())}
        for k, v in record.__dict__.items():
            if k not in _RESERVED and not k.startswith("_"):
                doc[k] = _redact(k, v, self.SECRET_KEYS)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    """One readable line for a person at a terminal: time, level, logger, message, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        fields = " ".join(f"{k}={_redact(k, v, JsonFormatter.SECRET_KEYS)}" for k, v in record.__dict__.items()
                          if k not in _RESERVED and not k.startswith("_"))
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}" + (f"  {fields}" if fields else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """JSON lines when stderr is not a terminal (or ``LAKEHOUSE_LOG_FORMAT=json``); readable lines on a
    terminal (or ``text``)."""
    if fmt is None:
        from lakehouse.settings import Settings

        fmt = Settings().log_format
    text = fmt == "text" or (fmt == "auto" and sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if text else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def settings(**overrides: Any) -> Settings:
    from pydantic import ValidationError

    from lakehouse.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"invalid setting {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
        raise  # unreachable


def context(migrate: bool = True, **overrides: Any) -> Context:
    """The service context of a command that writes: it migrates first (under the migration lock)."""
    from lakehouse.services.context import open_context

    s = settings(**overrides)
    if migrate:
        from lakehouse.store.migrations import upgrade

        s.ensure_home()
        upgrade(s.database_url)
    return open_context(s)


def read_context(**overrides: Any) -> Context:
    """The service context of a command that only reads: it never migrates (a `lakehouse sql` typed
    while a server starts must not race its migrations) and says so when the database is not ready."""
    from lakehouse.services.context import open_context
    from lakehouse.store.migrations import is_at_head

    s = settings(**overrides)
    if not is_at_head(s.database_url):
        fail("the metadata database is not initialised or not up to date: run `lakehouse db upgrade` "
             "(or start `lakehouse up`) first")
    return open_context(s)


def keep_whole(table: Any, *columns: int) -> Any:
    """Never cut or wrap the cells of these columns (run ids, job and pipeline names, dataset names): each
    keeps the width of its widest cell, and the other columns wrap around them, even in 80 columns. Call
    it once the rows are added."""
    from rich.text import Text

    for i in columns:
        col = table.columns[i]
        cells = [col.header, *col.cells]
        widest = max((c.cell_len if isinstance(c, Text) else Text.from_markup(str(c)).cell_len) for c in cells)
        col.no_wrap, col.overflow, col.min_width = True, "fold", widest
    return table


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def one_line_errors(fn: F) -> F:
    """Turn service errors (and database connection errors) into one line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pydantic import ValidationError

        from lakehouse.services.errors import ServiceError
        from lakehouse.store.types_public import OperationalError

        try:
            return fn(*args, **kwargs)
        except ServiceError as exc:
            fail(exc.message)
        except OperationalError as exc:
            fail(f"cannot reach the metadata database: {str(exc.orig).strip().splitlines()[0]}")
        except ValidationError as exc:
            first = exc.errors()[0]
            fail(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")

    return wrapper  # type: ignore[return-value]


def cli_actor() -> Any:
    """The principal of an admin command typed on the server's own machine: ``cli:<os user>``, admin."""
    import getpass

    from lakehouse.domain.principal import Principal

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        user = "unknown"
    return Principal(name=f"cli:{user}"[:100], role="admin")
