"""The `lakehouse` executable. `lakehouse sql "…"` is typed often and should answer at once: it loads only
its own command (about a tenth of the imports of the whole CLI); every other command loads them all
(``lakehouse.cli.main``)."""

from __future__ import annotations

import sys
from typing import Any


def main() -> Any:
    if sys.argv[1:2] == ["sql"]:
        import typer

        from lakehouse.cli.sql import sql

        solo = typer.Typer(help="Lakehouse Control Room.", no_args_is_help=True, pretty_exceptions_enable=False,
                           add_completion=False)
        solo.command("sql")(sql)

        @solo.callback()
        def _group() -> None:  # keeps `sql` a sub-command, as in the whole CLI
            """Lakehouse Control Room."""

        return solo()
    from lakehouse.cli.main import app

    return app()
