"""`lakehouse audit …`: check and read the hash-chained audit log."""

from __future__ import annotations

import typer

from lakehouse.cli.common import console, fail, one_line_errors, read_context
from lakehouse.domain.principal import SYSTEM
from lakehouse.services import audit

app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)


@app.command("verify")
@one_line_errors
def verify() -> None:
    """Walk the hash chain; exit 1 naming the first entry that was edited, or follows a deleted one."""
    ctx = read_context()
    try:
        result = audit.verify_chain(ctx, SYSTEM)
    finally:
        ctx.db.dispose()
    if not result["ok"]:
        fail(f"audit chain broken at entry {result['first_bad']}: it was edited, or an entry before it was deleted")
    console.print(f"audit chain intact: {result['entries']} entries", highlight=False)


@app.command("list")
@one_line_errors
def list_entries(limit: int = typer.Option(20, "--limit", min=1, max=10_000),
                 actor: str = typer.Option(None, "--actor"), action: str = typer.Option(None, "--action")) -> None:
    """The newest entries, newest first."""
    ctx = read_context()
    try:
        rows = audit.newest(ctx, SYSTEM, limit, actor, action)
    finally:
        ctx.db.dispose()
    for r in rows:
        print(f"{r.id}\t{r.ts.isoformat(timespec='seconds')}\t{r.actor}\t{r.action}\t"
              f"{r.object_type or ''}\t{r.object_id or ''}\t{r.address or ''}")
