"""`lakehouse tables list|show|tag|register`: the dataset registry (services/datasets.py)."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from lakehouse.cli.common import console, context, keep_whole, one_line_errors, read_context
from lakehouse.domain.principal import SYSTEM
from lakehouse.services import datasets

app = typer.Typer(help="The dataset registry: tables with owner, tags, freshness and quality.", no_args_is_help=True)


@app.command("list")
@one_line_errors
def list_(q: str = typer.Option(None, "--q", help="name or description contains"),
          tag: str = typer.Option(None, "--tag"), owner: str = typer.Option(None, "--owner"),
          env: str = typer.Option(None, "--env"), workspace: str = typer.Option("default", "--workspace", "-w"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Datasets with owner, tags, freshness and quality; search by name, tag and owner."""
    items = datasets.search(read_context(), SYSTEM, workspace=workspace, env=env, q=q, tag=tag, owner=owner)
    if as_json:
        print(json.dumps(items, default=str, indent=2))
        return
    if not items:
        console.print("No datasets match.")
        return
    table = Table("dataset", "env", "owner", "tags", "rows", "freshness", "quality", "origin")
    for d in items:
        table.add_row(d["name"], d["environment"], d["owner"] or "—", ", ".join(d["tags"]) or "—",
                      "—" if d["rows"] is None else f"{d['rows']:,}", d["freshness"]["state"],
                      d["quality"]["state"], d["origin"])
    console.print(keep_whole(table, 0))  # dataset names whole in 80 columns


@app.command("show")
@one_line_errors
def show(name: str, env: str = typer.Option("dev", "--env"),
         workspace: str = typer.Option("default", "--workspace", "-w"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """One dataset: location, owner, tags, status, current snapshot and schema."""
    d = datasets.show(read_context(), SYSTEM, name, env=env, workspace=workspace)
    if as_json:
        print(json.dumps(d, default=str, indent=2))
        return
    for key in ("name", "workspace", "environment", "format", "location", "metadata_location", "owner",
                "description", "origin", "last_run_id", "current_snapshot_id", "total_rows"):
        console.print(f"[bold]{key}[/]: {d.get(key) if d.get(key) not in (None, '') else '—'}")
    console.print(f"[bold]tags[/]: {', '.join(d['tags']) or '—'}")
    console.print(f"[bold]freshness[/]: {d['freshness']['state']}  [bold]quality[/]: {d['quality']['state']}")
    for col in d.get("schema", []):
        console.print(f"  {col['name']}  {col['type']}{'' if col['required'] else ' (nullable)'}")


@app.command("tag")
@one_line_errors
def tag(name: str, tags: list[str] = typer.Argument(..., help="tags to add (or remove with --remove)"),
        remove: bool = typer.Option(False, "--remove"), env: str = typer.Option("dev", "--env"),
        workspace: str = typer.Option("default", "--workspace", "-w")) -> None:
    """Add tags to a dataset, or remove them with --remove."""
    d = datasets.update(context(), SYSTEM, name, env=env, workspace=workspace,
                        add_tags=[] if remove else tags, remove_tags=tags if remove else [])
    console.print(f"{d['name']} ({env}): {', '.join(d['tags']) or 'no tags'}")


@app.command("register")
@one_line_errors
def register(name: str, metadata_location: str = typer.Option(..., "--metadata-location"),
             env: str = typer.Option("dev", "--env"), workspace: str = typer.Option("default", "--workspace", "-w"),
             owner: str = typer.Option(None, "--owner"), description: str = typer.Option("", "--description"),
             tags: list[str] = typer.Option([], "--tag")) -> None:
    """Register an existing Iceberg table (its metadata file, inside the warehouse) as layer.table."""
    d = datasets.register(context(), SYSTEM, name, metadata_location, env=env, workspace=workspace,
                          owner=owner, description=description, tags=tags)
    console.print(f"registered {d['name']} ({env}) at {d['location']}")
