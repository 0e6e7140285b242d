"""`lakehouse audit …`: check and read the hash-chained audit log."""

from __future__ import annotations

import typer
from sqlalchemy import func, select

from lakehouse.cli.common import console, context, fail, one_line_errors
from lakehouse.services import audit
from lakehouse.store.tables import audit_log

app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)


@app.command("verify")
@one_line_errors
def verify() -> None:
    """Walk the hash chain; exit 1 naming the first entry that was edited, or follows a deleted one."""
    ctx = context()
    with ctx.db.read() as conn:
        ok, bad = audit.verify(conn)
        total = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
    ctx.db.dispose()
    if not ok:
        fail(f"audit chain broken at entry {bad}: it was edited, or an entry before it was deleted")
    console.print(f"audit chain intact: {total} entries", highlight=False)


@app.command("list")
@one_line_errors
def list_entries(limit: int = typer.Option(20, "--limit", min=1, max=10_000),
                 actor: str = typer.Option(None, "--actor"), action: str = typer.Option(None, "--action")) -> None:
    """The newest entries, newest first."""
    ctx = context()
    stmt = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if actor:
        stmt = stmt.where(audit_log.c.actor == actor)
    if action:
        stmt = stmt.where(audit_log.c.action.startswith(action, autoescape=True))
    with ctx.db.read() as conn:
        for r in conn.execute(stmt).mappings():
            print(f"{r['id']}\t{r['ts'].isoformat(timespec='seconds')}\t{r['actor']}\t{r['action']}\t"
                  f"{r['object_type'] or ''}\t{r['object_id'] or ''}\t{r['address'] or ''}")
    ctx.db.dispose()
