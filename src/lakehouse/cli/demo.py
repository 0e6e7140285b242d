"""`lakehouse demo`: the control plane with local workers, an Odoo-shaped sample source, and the
reference medallion pipelines run end to end."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lakehouse.cli.common import console, context, fail, keep_whole, one_line_errors, setup_logging
from lakehouse.cli.render import status_text
from lakehouse.cli.server import Running, print_admin
from lakehouse.domain.principal import SYSTEM
from lakehouse.services import jobs, pipelines, runs
from lakehouse.services.context import Context

PIPELINES = ("odoo_ingest_bronze", "bronze_to_silver", "silver_to_gold")
GOLD_PREVIEW = ("gold.gl_trial_balance", "gold.revenue_monthly", "gold.ar_aging", "gold.sales_pipeline")
PREVIEW_ROWS = 6


@one_line_errors
def demo(port: int = typer.Option(None), workers: int = typer.Option(2, min=1, max=16),
         scale: int = typer.Option(5, min=1, help="size of the sample Odoo source (1 ≈ 1,000 journal lines)"),
         exit_after: bool = typer.Option(False, "--exit", help="stop once the demo runs finished")) -> None:
    """Start everything, seed the sample Odoo source, run the three pipelines through real workers,
    print the gold results, stay up until Ctrl-C."""
    setup_logging("WARNING")
    ctx = context(port=port)
    s = ctx.settings
    if not s.pipelines_dir.is_dir():
        fail(f"no pipelines folder at {s.pipelines_dir} (set LAKEHOUSE_PIPELINES_DIR)")
    source = seed_demo_source(s.home, scale)
    register_demo_connection(ctx, s.home / "demo" / "odoo.db")
    # handed to the workers, which expand ${LAKEHOUSE_ODOO_URL} and ${LAKEHOUSE_HOME} in the specs
    worker_env = {"LAKEHOUSE_ODOO_URL": os.environ.get("LAKEHOUSE_ODOO_URL") or source}
    print_admin(ctx, f"http://{s.host}:{s.port}")
    cmd = installed_command()
    with Running(ctx, s.host, s.port, workers, worker_log_level="WARNING", worker_env=worker_env) as running:
        for name in PIPELINES:
            run, _ = pipelines.start_run(ctx, SYSTEM, name, "dev")
            final = watch(ctx, run["run_id"], title=name)
            if final["status"] != "succeeded":
                console.print(f"[red]{name} {final['status']}[/]: {final['error']} — "
                              f"`{cmd} runs show {final['run_id'][:8]} --events` tells the whole story")
                raise typer.Exit(1)
        show_gold(ctx)
        schedule_demo_jobs(ctx)
        console.print(f"\nControl Room: [bold]{running.base}[/]  ·  runs: `{cmd} runs list`  ·  "
                      f"SQL: `{cmd} sql \"SELECT * FROM gold.revenue_monthly LIMIT 5\"`")
        if not exit_after:
            console.print("Ctrl-C stops it")
            running.wait_forever()


# the incremental Odoo ingest every 5 minutes, silver and gold following it: freshness < 15 min
DEMO_JOBS = (
    {"name": "odoo_ingest", "type": "pipeline", "pipeline": {"name": "odoo_ingest_bronze"},
     "description": "incremental Odoo ingest into bronze, every 5 minutes",
     "schedule": {"cron": "*/5 * * * *", "timezone": "UTC", "catchup": "latest"}},
    {"name": "odoo_silver", "type": "pipeline", "pipeline": {"name": "bronze_to_silver"},
     "description": "bronze → silver after each ingest", "triggers": [{"on_success_of": "odoo_ingest"}]},
    {"name": "odoo_gold", "type": "pipeline", "pipeline": {"name": "silver_to_gold"},
     "description": "silver → gold after each silver run", "triggers": [{"on_success_of": "odoo_silver"}]},
)


def schedule_demo_jobs(ctx: Context) -> None:
    """Save the demo's jobs (once: a job that exists is left as its owner edited it)."""
    existing = {j["name"] for j in jobs.list_jobs(ctx, SYSTEM, "default")}
    for definition in DEMO_JOBS:
        if definition["name"] not in existing:
            jobs.save(ctx, SYSTEM, "default", dict(definition))
    console.print("scheduled: odoo_ingest every 5 minutes, then odoo_silver and odoo_gold (see Jobs)")


def seed_demo_source(home: Path, scale: int) -> str:
    from lakehouse.connectors.odoo_seed import seed

    path = home / "demo" / "odoo.db"
    url = f"sqlite:///{path}"
    if path.exists():
        console.print(f"sample Odoo source: {path} (already seeded)")
        return url
    path.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"seeding a sample Odoo 17 database at {path} (scale {scale}) …")
    counts = seed(url, scale, progress=True)
    console.print(f"  {counts.get('account_move', 0):,} journal entries, "
                  f"{counts.get('account_move_line', 0):,} journal items, {counts.get('sale_order', 0):,} sales orders")
    return url


def register_demo_connection(ctx: Context, path: Path) -> None:
    """The demo's Odoo source appears on the Connections page (SQLite, default workspace, dev)."""
    from lakehouse.services import connections
    from lakehouse.services.errors import ServiceError

    if any(c["name"] == "odoo-demo" for c in connections.list_connections(ctx, SYSTEM, "dev")):
        return
    try:
        connections.create(ctx, SYSTEM, workspace="default", environment="dev", name="odoo-demo", type_="sqlite",
                           config={"path": str(path)}, secrets={})
    except ServiceError as exc:  # the demo goes on without it; say why
        console.print(f"[yellow]the demo source was not registered as a connection: {exc.message}[/]")


def show_gold(ctx: Context) -> None:
    """A few rows of each gold table, with the table's own column names."""
    from lakehouse.lake import duck
    from lakehouse.lake.catalog import catalog_for

    with duck.connect(catalog_for(ctx.settings), "dev") as lake:
        for table in GOLD_PREVIEW:
            rel = lake.sql(f"SELECT * FROM {table} ORDER BY ALL LIMIT {PREVIEW_ROWS}")
            out = Table(*rel.columns, title=table, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                        collapse_padding=True, pad_edge=False)
            for row in rel.fetchall():
                out.add_row(*[_fmt(v) for v in row])
            console.print(keep_whole(out, *range(len(out.columns))))  # real column names, whole, in 80 columns


def installed_command(argv0: str | None = None, cwd: Path | None = None) -> str:
    """How the user can type this CLI again: ``lakehouse`` when that is what the PATH finds (an
    activated venv), else the path they ran (``.venv/bin/lakehouse``), relative to the folder."""
    import shutil
    import sys

    argv0 = argv0 if argv0 is not None else sys.argv[0]
    exe = Path(argv0)
    if exe.name != "lakehouse":  # python -m lakehouse.cli.main, or a test runner
        found = shutil.which("lakehouse")
        exe = Path(found) if found else Path(sys.executable).with_name("lakehouse")
    on_path = shutil.which("lakehouse")
    if on_path and Path(on_path).resolve() == exe.resolve():
        return "lakehouse"
    try:
        return str(exe.resolve().relative_to((cwd or Path.cwd()).resolve()))
    except ValueError:
        return str(exe)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if hasattr(v, "quantize"):
        return f"{v:,.2f}"
    return str(v)


def watch(ctx: Context, run_id: str, timeout_s: float = 3600, title: str | None = None) -> dict[str, Any]:
    """Show a run's phases as progress bars until it finishes."""
    run = runs.get_run(ctx, run_id, SYSTEM)
    if title:
        console.print(f"[bold]{title}[/] run {run_id}")
    with Progress(TextColumn("  {task.description:<22}"), BarColumn(), TextColumn("{task.fields[status]}"),
                  TimeElapsedColumn(), console=console) as progress:
        tasks = {p["name"]: progress.add_task(p["name"], total=1, status=status_text(p["status"]))
                 for p in run["phases"]}
        deadline = time.monotonic() + timeout_s
        while True:
            run = runs.get_run(ctx, run_id, SYSTEM)
            for p in run["phases"]:
                done = p["status"] in ("succeeded", "failed", "cancelled", "skipped")
                frac = (p.get("progress") or {}).get("fraction") if p["status"] == "running" else None
                progress.update(tasks[p["name"]], completed=1 if done else (frac or 0),
                                status=status_text(p["status"]))
            if run["status"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
                return run
            time.sleep(0.1)
