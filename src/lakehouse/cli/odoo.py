"""`lakehouse odoo seed`: create a realistic Odoo-17-shaped source database."""

from __future__ import annotations

import time
from datetime import date

import typer
from rich.table import Table

from lakehouse.cli.common import console, fail

app = typer.Typer(help="Odoo source.", no_args_is_help=True)


@app.callback()
def odoo() -> None:
    """Odoo source."""


@app.command("seed")
def seed(
    url: str = typer.Option(..., "--url", help="postgresql://user@host:port/db or sqlite:///path/to/odoo.db"),
    scale: int = typer.Option(1, "--scale", min=1, help="Size: about 1,000 journal items per unit."),
    seed_: int = typer.Option(17, "--seed", help="Random seed; the same seed and scale give the same rows."),
    reset: bool = typer.Option(False, "--reset", help="Drop and recreate the Odoo tables if they exist."),
    anchor: str = typer.Option("2026-01-01", "--anchor-date", help="Data covers the year before this date."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
) -> None:
    """Create the Odoo tables at URL and fill them with deterministic synthetic data."""
    from lakehouse.connectors import ConnectorError
    from lakehouse.connectors.odoo_seed import seed as run_seed

    try:
        anchor_date = date.fromisoformat(anchor)
    except ValueError:
        fail(f"--anchor-date must be a date like 2026-01-01, got {anchor!r}")
        raise  # unreachable: fail exits
    started = time.perf_counter()
    try:
        counts = run_seed(url, scale, seed=seed_, reset=reset, progress=progress, anchor=anchor_date)
    except ConnectorError as exc:
        fail(exc.message)
        raise  # unreachable: fail exits
    elapsed = max(time.perf_counter() - started, 1e-9)
    table = Table("table", "rows")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    total = sum(counts.values())
    lines = counts.get("account_move_line", 0)
    console.print(f"seeded Odoo 17 (scale {scale}, seed {seed_}): {total:,} rows in {elapsed:.1f} s, "
                  f"{total / elapsed:,.0f} rows/s "
                  f"({lines / elapsed:,.0f} journal items/s)", highlight=False, soft_wrap=True)
