"""`lakehouse pipelines validate|list|run`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from lakehouse.cli.common import console, context, err_console, one_line_errors
from lakehouse.cli.render import status_text
from lakehouse.domain.principal import SYSTEM
from lakehouse.services import pipelines

app = typer.Typer(help="Pipeline specs.", no_args_is_help=True)


@app.command("validate")
def validate(paths: list[Path] = typer.Argument(..., help="spec files or folders")) -> None:
    """Check specs; print every error as file:line and exit non-zero when any is invalid."""
    files = pipelines.discover(paths)
    if not files:
        err_console.print("error: no pipeline specs found")
        raise typer.Exit(1)
    bad = 0
    for path in files:
        loaded, errors = pipelines.load(path)
        if loaded is None:
            bad += 1
            for e in errors:
                err_console.print(str(e), highlight=False, soft_wrap=True)
        else:
            console.print(f"[green]✔[/] {path}: {loaded.spec.name} v{loaded.spec.version} "
                          f"({', '.join(p['name'] for p in loaded.spec.phases())})", highlight=False)
    if bad:
        err_console.print(f"{bad} of {len(files)} specs invalid")
        raise typer.Exit(1)


@app.command("list")
@one_line_errors
def list_() -> None:
    """The pipelines in LAKEHOUSE_PIPELINES_DIR."""
    ctx = context(migrate=False)
    table = Table("pipeline", "version", "valid", "phases")
    for spec in pipelines.list_specs(ctx.settings.pipelines_dir):
        table.add_row(spec["name"], str(spec["version"] or ""), "✔" if spec["valid"] else "✖ " + spec["errors"][0],
                      ", ".join(spec["phases"]))
    console.print(table)


@app.command("run")
@one_line_errors
def run(name: str, env: str = typer.Option("dev", "--env"),
        param: list[str] = typer.Option([], "--param", help="key=value, repeatable"),
        wait: bool = typer.Option(False, "--wait", help="follow the run until it finishes")) -> None:
    """Start a run of a pipeline (workers execute it)."""
    params = {}
    for p in param:
        key, sep, value = p.partition("=")
        if not sep:
            from lakehouse.cli.common import fail

            fail(f"--param {p!r} is not key=value")
        params[key] = value
    ctx = context()
    started, _ = pipelines.start_run(ctx, SYSTEM, name, env, params)
    console.print(f"run {started['run_id']} of {name} ({env}) {status_text(started['status'])}")
    if wait:
        from lakehouse.cli.demo import watch

        final = watch(ctx, started["run_id"], timeout_s=3600)
        console.print(f"run {final['run_id']} {status_text(final['status'])}")
        if final["status"] != "succeeded":
            raise typer.Exit(1)
