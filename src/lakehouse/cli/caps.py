"""`lakehouse caps …`: runtime caps from the shell (docs/operations.md, Caps). Commands act as the local
admin, audited as ``cli:<os user>``."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from lakehouse.cli.common import cli_actor as _actor
from lakehouse.cli.common import console, context, one_line_errors
from lakehouse.services import caps

app = typer.Typer(help="Runtime caps: concurrency, daily runtime budgets, phase timeouts, queue limits.",
                  no_args_is_help=True)


def _limit(value: Any) -> str:
    return "-" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


def _scope(c: dict[str, Any]) -> str:
    return c["scope"] if not c["value"] else f"{c['scope']} {c['value']}"


@app.command("list")
@one_line_errors
def list_(workspace: str | None = typer.Option(None, help="one workspace (default: all)"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Every cap with its limits."""
    items = caps.report(context(), _actor(), workspace)
    if as_json:
        print(json.dumps(items, default=str, indent=2))
        return
    table = Table("id", "workspace", "scope", "max_concurrent", "runtime_s_per_day", "max_phase_timeout_s",
                  "max_queued_runs", "queue_mode")
    for c in items:
        table.add_row(str(c["id"]), c["workspace"], _scope(c), _limit(c["max_concurrent"]),
                      _limit(c["runtime_s_per_day"]), _limit(c["max_phase_timeout_s"]),
                      _limit(c["max_queued_runs"]), c["queue_mode"])
    console.print(table if items else "No caps.")


@app.command("set")
@one_line_errors
def set_(scope: str = typer.Argument(..., help="workspace, pipeline, capability or executor"),
         value: str | None = typer.Argument(None, help="the pipeline, capability or executor (not for workspace)"),
         workspace: str = typer.Option("default"),
         max_concurrent: int | None = typer.Option(None, help="leased phases at once"),
         runtime_s_per_day: float | None = typer.Option(None, help="phase seconds per UTC day"),
         max_phase_timeout_s: float | None = typer.Option(None, help="the longest timeout a phase gets"),
         max_queued_runs: int | None = typer.Option(None, help="runs waiting in the queue"),
         queue_mode: str = typer.Option("reject", help="over max_queued_runs: reject (429) or hold")) -> None:
    """Create or replace the cap of one scope (limits not given are cleared)."""
    limits = {k: v for k, v in (("max_concurrent", max_concurrent), ("runtime_s_per_day", runtime_s_per_day),
                                ("max_phase_timeout_s", max_phase_timeout_s), ("max_queued_runs", max_queued_runs))
              if v is not None}
    c = caps.set_cap(context(), _actor(), workspace, scope, value, limits, queue_mode)
    console.print(f"cap {c['id']}: {c['workspace']} {_scope(c)} set")


@app.command("delete")
@one_line_errors
def delete(cap_id: int) -> None:
    """Delete a cap."""
    caps.delete_cap(context(), _actor(), cap_id)
    console.print(f"cap {cap_id} deleted")


@app.command("report")
@one_line_errors
def report(workspace: str | None = typer.Option(None, help="one workspace (default: all)"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Usage vs limit now, and who is throttled."""
    items = caps.report(context(), _actor(), workspace)
    if as_json:
        print(json.dumps(items, default=str, indent=2))
        return
    table = Table("id", "workspace", "scope", "running", "runtime today (s)", "queued runs", "waiting", "held",
                  "throttled")
    for c in items:
        u = c["usage"]
        table.add_row(str(c["id"]), c["workspace"], _scope(c), f"{u['concurrent']} / {_limit(c['max_concurrent'])}",
                      f"{u['runtime_s_today']:.0f} / {_limit(c['runtime_s_per_day'])}",
                      f"{u['queued_runs']} / {_limit(c['max_queued_runs'])}", str(u["waiting_phases"]),
                      str(u["held_runs"]), ", ".join(c["throttled"]) or "-")
    console.print(table if items else "No caps.")
