"""`lakehouse runs list|show|cancel|rerun`: run ids may be given as a unique prefix (the 8 characters the
Control Room shows)."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from lakehouse.cli.common import console, context, keep_whole, one_line_errors, read_context
from lakehouse.cli.render import duration, status_text
from lakehouse.domain.principal import SYSTEM
from lakehouse.domain.states import shown_phase_status
from lakehouse.services import reruns, runs

app = typer.Typer(help="Runs.", no_args_is_help=True)


@app.command("list")
@one_line_errors
def list_(status: str = typer.Option(None), pipeline: str = typer.Option(None, "--pipeline"),
          env: str = typer.Option(None, "--env"), limit: int = typer.Option(20, min=1, max=500),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Newest runs first."""
    items = runs.list_runs(read_context(), SYSTEM, status=status, spec_slug=pipeline, environment=env, limit=limit)
    if as_json:
        print(json.dumps(items, default=str, indent=2))
        return
    if not items:
        console.print("No runs yet — create one with POST /ops/runs or `lakehouse demo`.")
        return
    table = Table("run", "pipeline", "env", "status", "created", "took")
    for r in items:
        run_id = r["run_id"][:8] if console.width < 120 else r["run_id"]  # `runs show` takes the 8 characters
        table.add_row(run_id, r["spec_slug"], r["environment"], status_text(r["status"]),
                      r["created_at"].strftime("%Y-%m-%d %H:%M:%S"), duration(r["started_at"], r["finished_at"]))
    console.print(keep_whole(table, 0, 1, 3))


@app.command("show")
@one_line_errors
def show(run_id: str, as_json: bool = typer.Option(False, "--json"),
         events: bool = typer.Option(False, "--events", help="also print the event trail")) -> None:
    """One run with its phases."""
    ctx = read_context()
    run_id = reruns.resolve_run_id(ctx, SYSTEM, run_id)
    run = runs.get_run(ctx, run_id, SYSTEM)
    if as_json:
        print(json.dumps(run, default=str, indent=2))
        return
    console.print(f"[bold]{run['run_id']}[/]  {run['spec_slug']} @ {run['git_sha']}  env={run['environment']}  "
                  f"{status_text(run['status'])}")
    if run["error"]:
        console.print(f"[red]{run['error']}[/]")
    errors = any(p["error"] for p in run["phases"])  # the error column only when there is one
    table = Table("phase", "type", "status", "try", "executor", "took", *(["error"] if errors else []))
    for p in run["phases"]:  # in their order
        shown = status_text(shown_phase_status(p["status"], p["attempt"]))
        table.add_row(p["name"], p["type"], shown, f"{p['attempt']}/{p['max_attempts']}",
                      p["executor_id"] or "", duration(p["started_at"], p["finished_at"]),
                      *([(p["error"] or "")[:80]] if errors else []))
    console.print(keep_whole(table, 0, 1, 2, 3, 4, 5))
    if events:
        for e in runs.read_events(ctx, run_id, SYSTEM):
            console.print(f"{e['seq']:>4} {e['ts']:%H:%M:%S.%f} {e['type']:<16} {e['phase'] or '':<12} {e['message']}",
                          highlight=False)


@app.command("cancel")
@one_line_errors
def cancel(run_id: str) -> None:
    """Cancel a run; leases on it are revoked."""
    ctx = context()
    run = runs.cancel_run(ctx, reruns.resolve_run_id(ctx, SYSTEM, run_id), SYSTEM)
    console.print(f"run {run['run_id']} {status_text(run['status'])}")


@app.command("rerun")
@one_line_errors
def rerun(run_id: str, from_phase: str = typer.Option(None, "--from", help="start at this phase (earlier "
                                                                         "phases' outputs are reused)"),
          current_spec: bool = typer.Option(False, "--current-spec",
                                            help="run the pipeline's current spec instead of the frozen one")) -> None:
    """Start a new run from a run: as it ran (its frozen spec and parameters), or with the current spec."""
    ctx = context()
    new = reruns.rerun(ctx, SYSTEM, reruns.resolve_run_id(ctx, SYSTEM, run_id), from_phase=from_phase,
                       mode="current" if current_spec else "as_ran")
    how = "current spec" if current_spec else "as it ran"
    start = f", from {from_phase}" if from_phase else ""
    console.print(f"run {new['run_id']} {status_text(new['status'])} (rerun of {run_id}, {how}{start})")
