"""`lakehouse demo`: the control plane with local workers and a sample multi-phase run."""

from __future__ import annotations

import time

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from lakehouse.cli.common import console, context, one_line_errors, setup_logging
from lakehouse.cli.render import status_text
from lakehouse.cli.server import Running, print_admin
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.services import runs
from lakehouse.services.auth import SYSTEM

SAMPLE = RunRequest(
    spec_slug="demo_sample", git_sha="demo",
    phases=[
        PhaseSpec(name="extract", type="sleep", params={"seconds": 0.3}),
        PhaseSpec(name="transform", type="sql", params={
            "sql": "SELECT i % 7 AS bucket, count(*) AS n, sum(i) AS total FROM range(100000) t(i) "
                   "GROUP BY 1 ORDER BY 1"}),
        PhaseSpec(name="check", type="python", params={"callable": "lakehouse.handlers.samples:row_check",
                                                       "args": {"min_rows": 7}}),
        PhaseSpec(name="publish", type="noop"),
    ],
)


@one_line_errors
def demo(port: int = typer.Option(None), workers: int = typer.Option(2, min=1, max=16),
         exit_after: bool = typer.Option(False, "--exit", help="stop once the demo runs finished")) -> None:
    """Start everything, run the sample pipeline through real workers, stay up until Ctrl-C."""
    setup_logging("WARNING")
    ctx = context(port=port)
    s = ctx.settings
    with Running(ctx, s.host, s.port, workers) as running:
        print_admin(ctx, running.base)
        run, _ = runs.create_run(ctx, SAMPLE.model_copy(update={"idempotency_key": None}), SYSTEM)
        final = watch(ctx, run["run_id"])
        console.print(f"run {final['run_id']} {status_text(final['status'])} — "
                      f"`lakehouse runs show {final['run_id']} --events` tells the whole story")
        if final["status"] != "succeeded":
            raise typer.Exit(1)
        if not exit_after:
            console.print(f"Control plane at [bold]{running.base}[/] — Ctrl-C stops it")
            running.wait_forever()


def watch(ctx, run_id: str, timeout_s: float = 300) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Show a run's phases as progress bars until it finishes."""
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.fields[status]}"),
                  TimeElapsedColumn(), console=console) as progress:
        run = runs.get_run(ctx, run_id, SYSTEM)
        tasks = {p["name"]: progress.add_task(p["name"], total=1, status=status_text(p["status"]))
                 for p in run["phases"]}
        deadline = time.monotonic() + timeout_s
        while True:
            run = runs.get_run(ctx, run_id, SYSTEM)
            for p in run["phases"]:
                done = p["status"] in ("succeeded", "failed", "cancelled", "skipped")
                progress.update(tasks[p["name"]], completed=1 if done else 0, status=status_text(p["status"]))
            if run["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
                return run
            time.sleep(0.1)
