"""`lakehouse jobs create|list|show|run|rerun|versions|diff|apply|pause|resume|archive|backfills` and
`lakehouse backfill`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from lakehouse.cli.common import console, context, fail, keep_whole, one_line_errors
from lakehouse.cli.render import status_text
from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.services import backfills, job_runs, jobs, promotions

app = typer.Typer(help="Jobs: versioned, parameterised, scheduled work.", no_args_is_help=True)
WS = typer.Option("default", "--workspace", "-w", help="workspace slug")


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            fail(f"--param {p!r} is not key=value")
        out[key] = value
    return out


@app.command("create")
@one_line_errors
def create(path: Path = typer.Argument(..., help="a job YAML file"), workspace: str = WS) -> None:
    """Create a job from a YAML file (a name the workspace has is an error; use apply to sync)."""
    loaded = jobs.load_files([path])
    if not loaded:
        fail(f"no job file at {path}")
    file, d, sha, error = loaded[0]
    if d is None:
        fail(error or f"{file} is invalid")
    saved = jobs.save(context(), SYSTEM, workspace, d, mode="create", git_sha=sha)  # type: ignore[arg-type]
    console.print(f"job {saved.job['name']} created (v{saved.job['version']}, {saved.job['content_hash'][:12]})",
                  highlight=False)


@app.command("list")
@one_line_errors
def list_(workspace: str = typer.Option(None, "--workspace", "-w")) -> None:
    """Jobs: type, schedule, next run, last run status, owner."""
    table = Table("workspace", "job", "type", "version", "schedule", "next run (UTC)", "last run", "owner")
    for j in jobs.list_jobs(context(), SYSTEM, workspace):
        sched = f"{j['schedule']} {j['timezone']}" if j["schedule"] else ""
        if j["paused"]:
            sched += " (paused)"
        last = status_text(j["last_run"]["status"]) if j["last_run"] else ""
        table.add_row(j["workspace"], j["name"], j["type"], str(j["version"]), sched,
                      _at(j["next_fire_at"]), last, j["owner"] or "")
    console.print(keep_whole(table, 0, 1))  # ids and names whole in 80 columns


def _at(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


@app.command("show")
@one_line_errors
def show(name: str, workspace: str = WS) -> None:
    """A job: its current version, schedule and next fire times, recent runs."""
    j = jobs.get_job(context(), SYSTEM, workspace, name)
    console.print(f"[bold]{j['name']}[/] ({j['type']}) in {j['workspace']}: version {j['version']} "
                  f"{j['content_hash'][:12]}" + (f" git {j['git_sha']}" if j["git_sha"] else ""), highlight=False)
    if j["description"]:
        console.print(j["description"], highlight=False)
    s = j["schedule"]
    if s:
        state = "paused" if j["paused"] else "active"
        console.print(f"schedule: {s['cron']} ({s['timezone']}), catch-up {s.get('catchup', 'none')}, {state}",
                      highlight=False)
        for at in j["next_fires"]:
            console.print(f"  next: {_at(at)} UTC", highlight=False)
    if j["triggers"]:
        console.print(f"runs after: {', '.join(j['triggers'])}", highlight=False)
    table = Table("run", "version", "trigger", "logical date", "status", "created")
    for r in j["recent_runs"]:
        table.add_row(r["run_id"], str(r["version"]), r["trigger"], _at(r["logical_date"]),
                      status_text(r["status"]), _at(r["created_at"]))
    console.print(keep_whole(table, 0))  # ids and names whole in 80 columns


@app.command("run")
@one_line_errors
def run(name: str, workspace: str = WS, env: str = typer.Option(None, "--env"),
        param: list[str] = typer.Option([], "--param", help="key=value, repeatable"),
        version: int = typer.Option(None, "--version", min=1)) -> None:
    """Run a job now (parameters override its defaults)."""
    started, _ = job_runs.run_job(context(), SYSTEM, workspace, name, _params(param), environment=env,
                                  version=version)
    console.print(f"run {started['run_id']} of {name} v{started['labels']['job_version']} "
                  f"{status_text(started['status'])}", highlight=False)


@app.command("rerun")
@one_line_errors
def rerun(run_id: str, param: list[str] = typer.Option([], "--param", help="key=value, repeatable")) -> None:
    """Run a job run again: same version and parameters, unless --param changes some."""
    started, _ = job_runs.rerun(context(), SYSTEM, run_id, _params(param))
    console.print(f"run {started['run_id']} (rerun of {run_id}) {status_text(started['status'])}", highlight=False)


@app.command("versions")
@one_line_errors
def versions(name: str, workspace: str = WS) -> None:
    table = Table("version", "content hash", "git", "by", "at")
    for v in jobs.versions(context(), SYSTEM, workspace, name):
        table.add_row(f"{v['version']}{' *' if v['current'] else ''}", v["content_hash"][:12], v["git_sha"] or "",
                      v["created_by"], _at(v["created_at"]))
    console.print(table)


@app.command("diff")
@one_line_errors
def diff(name: str, old: int = typer.Argument(..., min=1), new: int = typer.Argument(..., min=1),
         workspace: str = WS) -> None:
    """The unified diff between two versions."""
    print(jobs.version_diff(context(), SYSTEM, workspace, name, old, new)["diff"], end="")


@app.command("apply")
@one_line_errors
def apply(paths: list[Path] = typer.Argument(..., help="job files or folders"), workspace: str = WS,
          dry_run: bool = typer.Option(False, "--dry-run", help="print the plan, change nothing"),
          prune: bool = typer.Option(False, "--prune", help="archive jobs that no file defines")) -> None:
    """Sync jobs from files (GitOps): print the plan (create / update / unchanged), then apply it."""
    ctx = context()
    items = jobs.plan(ctx, SYSTEM, workspace, paths, prune=prune)
    if not items:
        fail("no job files found")
    marks = {"create": "[green]+ create[/]", "update": "[yellow]~ update[/]", "unchanged": "  unchanged",
             "archive": "[red]- archive[/]", "invalid": "[red]! invalid[/]"}
    for i in items:
        line = f"{marks[i.action]} {i.name}" + (f" (v{i.from_version})" if i.from_version else "")
        console.print(line + (f": {i.error}" if i.error else ""), highlight=False, soft_wrap=True)
        if i.action == "update" and i.diff:
            console.print(i.diff, highlight=False, markup=False, end="")
    counts = {a: sum(1 for i in items if i.action == a) for a in ("create", "update", "unchanged", "archive")}
    summary = ", ".join(f"{n} to {a}" if a != "unchanged" else f"{n} unchanged" for a, n in counts.items())
    if any(i.action == "invalid" for i in items):
        fail(f"plan has invalid jobs; nothing applied ({summary})")
    if dry_run:
        console.print(f"plan: {summary} (dry run, nothing changed)")
        return
    jobs.apply(ctx, SYSTEM, workspace, items)
    console.print(f"applied: {summary}")


@app.command("pause")
@one_line_errors
def pause(name: str, workspace: str = WS) -> None:
    jobs.set_paused(context(), SYSTEM, workspace, name, True)
    console.print(f"job {name} paused")


@app.command("resume")
@one_line_errors
def resume(name: str, workspace: str = WS) -> None:
    j = jobs.set_paused(context(), SYSTEM, workspace, name, False)
    nxt = f"; next run {_at(j['next_fires'][0])} UTC" if j["next_fires"] else ""
    console.print(f"job {name} resumed{nxt}", highlight=False)


@app.command("archive")
@one_line_errors
def archive(name: str, workspace: str = WS) -> None:
    jobs.archive(context(), SYSTEM, workspace, name)
    console.print(f"job {name} archived")


@app.command("backfills")
@one_line_errors
def list_backfills(name: str, workspace: str = WS) -> None:
    """A job's backfills and their progress."""
    table = Table("backfill", "range", "status", "done", "running", "failed", "queued", "total")
    for b in backfills.list_for_job(context(), SYSTEM, workspace, name):
        p = b["progress"]
        table.add_row(b["id"], f"{b['from']} → {b['to']}", b["status"], str(p["done"]), str(p["running"]),
                      str(p["failed"] + p["cancelled"]), str(p["queued"]), str(b["total"]))
    console.print(keep_whole(table, 0))  # ids and names whole in 80 columns


@app.command("cancel-backfill")
@one_line_errors
def cancel_backfill(backfill_id: str) -> None:
    b = backfills.cancel(context(), SYSTEM, backfill_id)
    console.print(f"backfill {backfill_id} {b['status']}")


@app.command("retry-backfill")
@one_line_errors
def retry_backfill(backfill_id: str) -> None:
    """New runs for the backfill's failed runs only."""
    b = backfills.retry_failed(context(), SYSTEM, backfill_id)
    console.print(f"backfill {backfill_id} {b['status']}: {b['retried']} runs retried")


@app.command("promote")
@one_line_errors
def promote(name: str, to: str = typer.Option(..., "--to", help="stage or prod"), workspace: str = WS,
            version: int = typer.Option(None, "--version", min=1, help="default: the current version"),
            comment: str = typer.Option(None, "--comment")) -> None:
    """Promote a job version to stage or prod through the workspace's gates (a failed gate is an
    error naming it; with an approval gate the promotion waits for `lakehouse jobs approve`)."""
    p = promotions.promote(context(), SYSTEM, workspace, name, to, version, comment)
    if p["status"] == "pending":
        console.print(f"{name} v{p['version']} → {p['environment']}: gates passed, waiting for approval "
                      f"(lakehouse jobs approve {name} --env {p['environment']})", highlight=False)
    else:
        console.print(f"{name} v{p['version']} promoted to {p['environment']}", highlight=False)


def _approver(by: str | None) -> Principal:
    return SYSTEM if not by else Principal(name=by, role=SYSTEM.role)


@app.command("approve")
@one_line_errors
def approve(name: str, env: str = typer.Option(..., "--env", help="stage or prod"), workspace: str = WS,
            by: str = typer.Option(None, "--by", help="the person approving, as the audit log records it "
                                                      "(the CLI acts with admin rights)"),
            comment: str = typer.Option(None, "--comment")) -> None:
    """Approve the promotion waiting for an environment."""
    p = promotions.approve(context(), _approver(by), workspace, name, env, comment)
    console.print(f"{name} v{p['version']} promoted to {p['environment']} (approved by {p['decided_by']})",
                  highlight=False)


@app.command("reject")
@one_line_errors
def reject(name: str, env: str = typer.Option(..., "--env", help="stage or prod"), workspace: str = WS,
           by: str = typer.Option(None, "--by", help="the person rejecting, as the audit log records it"),
           comment: str = typer.Option(None, "--comment")) -> None:
    """Reject the promotion waiting for an environment."""
    p = promotions.reject(context(), _approver(by), workspace, name, env, comment)
    console.print(f"promotion of {name} v{p['version']} to {p['environment']} rejected", highlight=False)


@app.command("promotions")
@one_line_errors
def promotion_state(name: str, workspace: str = WS) -> None:
    """Which version each environment runs, what waits for approval, and the gates."""
    s = promotions.state(context(), SYSTEM, workspace, name)
    console.print(f"dev: v{s['current_version']} (the current version; dev runs any version)", highlight=False)
    for e in s["environments"]:
        there = f"v{e['promoted']['version']}" if e["promoted"] else "nothing promoted"
        waiting = f"; v{e['pending']['version']} waits for approval" if e["pending"] else ""
        console.print(f"{e['environment']}: {there}{waiting}", highlight=False)
        for c in e["checks"]:
            console.print(f"  {'✓' if c['ok'] else '✕'} {c['gate']}: {c['reason']}", highlight=False)


@app.command("gates")
@one_line_errors
def gates(workspace: str = WS, env: str = typer.Option(None, "--env", help="stage or prod: change its gates"),
          min_runs: int = typer.Option(None, "--min-runs", min=0, max=100),
          require_dq: bool = typer.Option(None, "--require-dq/--no-require-dq"),
          require_approval: bool = typer.Option(None, "--require-approval/--no-require-approval"),
          approver_role: str = typer.Option(None, "--approver-role", help="admin or engineer"),
          approver_not_author: bool = typer.Option(None, "--approver-not-author/--author-may-approve")) -> None:
    """Show the workspace's promotion gates, or change those of --env."""
    ctx = context()
    values = {k: v for k, v in {"min_runs": min_runs, "require_dq": require_dq, "require_approval": require_approval,
                                "approver_role": approver_role, "approver_not_author": approver_not_author
                                }.items() if v is not None}
    if values and not env:
        fail("--env stage|prod names the environment whose gates change")
    if env:
        promotions.set_gates(ctx, SYSTEM, workspace, env, values)
    table = Table("env", "from", "min runs", "DQ", "approval", "approver role", "not the author")
    for g in promotions.get_gates(ctx, SYSTEM, workspace).values():
        table.add_row(g["environment"], g["lower"], str(g["min_runs"]), "yes" if g["require_dq"] else "no",
                      "yes" if g["require_approval"] else "no", g["approver_role"],
                      "yes" if g["approver_not_author"] else "no")
    console.print(table)


@one_line_errors
def backfill(job: str, from_: str = typer.Option(..., "--from", help="first date, YYYY-MM-DD"),
             to: str = typer.Option(..., "--to", help="last date, YYYY-MM-DD"), workspace: str = WS,
             max_concurrent: int = typer.Option(4, "--max-concurrent", min=1, max=10_000),
             partition: list[str] = typer.Option([], "--partition", help="repeatable: one run per date and partition"),
             param: list[str] = typer.Option([], "--param", help="key=value, repeatable"),
             detach: bool = typer.Option(False, "--detach", help="create it and return (no progress bar)")) -> None:
    """One run of JOB per logical date from --from to --to; follows its progress (Ctrl-C stops
    watching, not the backfill)."""
    ctx = context()
    b = backfills.create(ctx, SYSTEM, workspace, job, backfills.parse_date(from_, "--from"),
                         backfills.parse_date(to, "--to"), partitions=partition or None,
                         max_concurrent=max_concurrent, params=_params(param))
    console.print(f"backfill {b['id']}: {b['total']} runs of {job}, at most {max_concurrent} at once")
    if detach:
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("backfill", total=b["total"])
        try:
            while True:
                b = backfills.get(ctx, SYSTEM, b["id"])
                p = b["progress"]
                bar.update(task, completed=p["done"] + p["failed"] + p["cancelled"],
                           description=f"{p['done']} done, {p['running']} running, {p['failed']} failed, "
                                       f"{p['queued']} queued")
                if b["status"] != "running":
                    break
                time.sleep(1.0)
        except KeyboardInterrupt:
            console.print(f"stopped watching; the backfill goes on (lakehouse jobs backfills {job})")
            return
    console.print(f"backfill {b['id']} {b['status']}")
    if b["status"] != "succeeded":
        raise typer.Exit(1)
