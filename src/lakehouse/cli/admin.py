"""`lakehouse db …`, `lakehouse users …`, `lakehouse tokens …`."""

from __future__ import annotations

import sys

import typer

from lakehouse.cli.common import console, context, fail, one_line_errors, settings
from lakehouse.domain.principal import SYSTEM
from lakehouse.services import auth, sessions

db_app = typer.Typer(help="Metadata database.", no_args_is_help=True)
users_app = typer.Typer(help="Local users.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)


@db_app.command("upgrade")
@one_line_errors
def db_upgrade() -> None:
    """Apply migrations (Alembic) to LAKEHOUSE_DATABASE_URL."""
    from lakehouse.store.migrations import current, upgrade
    from lakehouse.store.types_public import OperationalError

    s = settings()
    s.ensure_home()
    try:
        upgrade(s.database_url)
        console.print(f"database at revision [bold]{current(s.database_url)}[/]")
    except OperationalError as exc:
        fail(f"cannot reach the metadata database: {str(exc.orig).strip().splitlines()[0]}")


@users_app.command("create")
@one_line_errors
def users_create(name: str, role: str = typer.Option(..., "--role", help="admin, engineer, analyst, viewer, executor"),
                 password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from stdin")
                 ) -> None:
    """Create a local user."""
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            fail("no password on stdin")
    user = auth.create_user(context(), name, role, password)
    console.print(f"created user [bold]{user['name']}[/] with role {user['role']}")


@users_app.command("unlock")
@one_line_errors
def users_unlock(name: str) -> None:
    """Clear the login throttling of a user from every address."""
    cleared = sessions.unlock(context(), SYSTEM, name)
    console.print(f"unlocked [bold]{name}[/] ({cleared} throttled address{'es' if cleared != 1 else ''} cleared)")


@tokens_app.command("create")
@one_line_errors
def tokens_create(user: str = typer.Option(..., "--user"), role: str = typer.Option(None, "--role"),
                  name: str = typer.Option(None, "--name", help="a label for the token")) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    token = auth.create_token(context(), user, role, name)
    print(token)
