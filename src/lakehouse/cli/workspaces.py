"""`lakehouse workspaces …`: create workspaces and manage their members (acts as the local admin)."""

from __future__ import annotations

import typer

from lakehouse.cli.common import console, context, one_line_errors
from lakehouse.domain.principal import SYSTEM
from lakehouse.services import workspaces

app = typer.Typer(help="Workspaces and their members.", no_args_is_help=True)


@app.command("create")
@one_line_errors
def create(slug: str = typer.Argument(..., help="lowercase letters, digits, _ and - (1-63)"),
           name: str = typer.Option(None, "--name", help="display name (default: the slug)")) -> None:
    """Create a workspace with its dev, stage and prod environments."""
    ws = workspaces.create_workspace(context(), SYSTEM, slug, name)
    console.print(f"created workspace [bold]{ws['slug']}[/] ({ws['name']})", highlight=False)


@app.command("list")
@one_line_errors
def list_() -> None:
    """Every workspace with its members and their roles."""
    ctx = context()
    members = workspaces.all_members(ctx, SYSTEM)
    for ws in workspaces.list_workspaces(ctx, SYSTEM):
        who = ", ".join(_who(m) for m in members.get(ws["slug"], [])) or "no members"
        console.print(f"[bold]{ws['slug']}[/]  {ws['name']}  —  {who}", highlight=False, soft_wrap=True)


def _who(m: dict[str, str]) -> str:
    capped = f" (acts as {m['effective_role']})" if m["effective_role"] != m["role"] else ""
    return f"{m['user']} {m['role']}{capped}"


@app.command("add-member")
@one_line_errors
def add_member(slug: str, user: str,
               role: str = typer.Option(None, "--role", help="viewer, analyst, engineer or admin; at most the "
                                                             "user's own role (default: their role)")) -> None:
    """Add a user to a workspace, or change their role in it."""
    m, created = workspaces.set_member(context(), SYSTEM, slug, user, role)
    verb = "added" if created else "updated"
    console.print(f"{verb}: [bold]{m['user']}[/] is {m['role']} in {m['workspace']}", highlight=False)


@app.command("remove-member")
@one_line_errors
def remove_member(slug: str, user: str) -> None:
    """Remove a user from a workspace; their sessions end."""
    workspaces.remove_member(context(), SYSTEM, slug, user)
    console.print(f"removed [bold]{user}[/] from {slug}", highlight=False)
