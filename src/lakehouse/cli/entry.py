"""The `lakehouse` executable. `lakehouse sql "…"` is typed often and should answer at once: through a
running server it loads only the standard library (``lakehouse.cli.sql_server``); otherwise it and the
login commands it relies on (`login`, `logout`, `whoami`) load only their own module (about a tenth of
the imports of the whole CLI); every other command loads them all (``lakehouse.cli.main``)."""

from __future__ import annotations

import sys
from typing import Any

LEAN = {"sql": ("lakehouse.cli.sql", "sql"), "login": ("lakehouse.cli.login", "login"),
        "logout": ("lakehouse.cli.login", "logout"), "whoami": ("lakehouse.cli.login", "whoami")}


def main() -> Any:
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "sql":
        from lakehouse.cli import sql_server

        code = sql_server.run(sys.argv[2:])
        if code == sql_server.HERE:
            sys.argv.insert(2, "--local")  # the server was asked: the Typer command must not ask again
        elif code is not None:
            return code
    if command in LEAN:
        import importlib

        import typer

        module, name = LEAN[command]
        solo = typer.Typer(help="Lakehouse Control Room.", no_args_is_help=True, pretty_exceptions_enable=False,
                           add_completion=False)
        solo.command(command)(getattr(importlib.import_module(module), name))

        @solo.callback()
        def _group() -> None:  # keeps the command a sub-command, as in the whole CLI
            """Lakehouse Control Room."""

        return solo()
    from lakehouse.cli.main import app

    return app()
