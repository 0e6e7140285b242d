"""`lakehouse alerts …` and `lakehouse scores …`: alerts, rules, the routing matrix, delivery and run
scores from the shell. Commands act as the local admin, audited as ``cli:<os user>``."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from lakehouse.cli.common import cli_actor as _actor
from lakehouse.cli.common import console, context, one_line_errors
from lakehouse.cli.render import alert_text
from lakehouse.services import alert_eval, alerts, scores

app = typer.Typer(help="Alerts, alert rules and the routing matrix.", no_args_is_help=True)
scores_app = typer.Typer(help="Run scores and their weights.", no_args_is_help=True)


def _json(value: Any) -> None:
    print(json.dumps(value, default=str, indent=2))


@app.command("list")
@one_line_errors
def list_(status: str = typer.Option("active", help="open, acknowledged, resolved, active or all"),
          limit: int = typer.Option(50, min=1, max=1000), as_json: bool = typer.Option(False, "--json")) -> None:
    """Alerts, newest first."""
    items = alerts.list_alerts(context(), _actor(), status, limit)
    if as_json:
        _json(items)
        return
    table = Table("id", "severity", "status", "rule", "title", "count", "last")
    for a in items:
        table.add_row(str(a["id"]), alert_text("sev", a["severity"]), alert_text("al", a["status"]), a["rule"],
                      a["title"][:80], str(a["occurrences"]),
                      a["last_at"].strftime("%Y-%m-%d %H:%M:%S"))
    console.print(table if items else "No alerts.")


@app.command("show")
@one_line_errors
def show(alert_id: int) -> None:
    """One alert with its notifications and delivery attempts (JSON)."""
    _json(alerts.get_alert(context(), _actor(), alert_id))


@app.command("ack")
@one_line_errors
def ack(alert_id: int) -> None:
    """Acknowledge an open alert (no more escalation or repeats)."""
    a = alerts.acknowledge(context(), _actor(), alert_id)
    console.print(f"alert {a['id']} acknowledged by {a['acked_by']}", highlight=False)


@app.command("resolve")
@one_line_errors
def resolve(alert_id: int) -> None:
    """Resolve an alert by hand; the channels that were told are told."""
    a = alerts.resolve(context(), _actor(), alert_id)
    console.print(f"alert {a['id']} resolved by {a['resolved_by']}", highlight=False)


@app.command("rules")
@one_line_errors
def rules(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every alert rule."""
    items = alerts.list_rules(context(), _actor())
    if as_json:
        _json(items)
        return
    table = Table("id", "workspace", "name", "kind", "severity", "scope", "params", "enabled")
    for r in items:
        scope = "/".join(x for x in (r["environment"], r["job"] and f"job:{r['job']}",
                                     r["pipeline"] and f"pipeline:{r['pipeline']}") if x) or "workspace"
        table.add_row(str(r["id"]), r["workspace"], r["name"], r["kind"], r["severity"], scope,
                      json.dumps(r["params"]), "yes" if r["enabled"] else "no")
    console.print(table if items else "No alert rules.")


@app.command("rule-add")
@one_line_errors
def rule_add(name: str, kind: str, workspace: str = typer.Option("default", "--workspace"),
             severity: str = typer.Option("error"), env: str = typer.Option(None, "--env"),
             job: str = typer.Option(None, "--job"), pipeline: str = typer.Option(None, "--pipeline"),
             team: str = typer.Option(None, "--team"),
             param: list[str] = typer.Option([], "--param", help="NAME=NUMBER or NAME=TEXT, repeatable"),
             window_s: float = typer.Option(None, "--window-s", help="grouping window (default 3600)")) -> None:
    """Add a rule, e.g. `lakehouse alerts rule-add slow duration_over_baseline --param k=3`."""
    params: dict[str, Any] = {}
    for item in param:
        key, _, value = item.partition("=")
        try:
            params[key] = float(value)
        except ValueError:
            params[key] = value
    r = alerts.create_rule(context(), _actor(), workspace, {
        "name": name, "kind": kind, "severity": severity, "environment": env, "job": job, "pipeline": pipeline,
        "team": team, "params": params, "window_s": window_s})
    console.print(f"rule {r['id']} {r['name']} ({r['kind']}, {r['severity']}) added to {r['workspace']}",
                  highlight=False)


@app.command("rule-delete")
@one_line_errors
def rule_delete(rule_id: int) -> None:
    """Delete a rule and its alerts."""
    alerts.delete_rule(context(), _actor(), rule_id)
    console.print(f"rule {rule_id} deleted", highlight=False)


@app.command("routes")
@one_line_errors
def routes(as_json: bool = typer.Option(False, "--json")) -> None:
    """The routing matrix."""
    items = alerts.list_routes(context(), _actor())
    if as_json:
        _json(items)
        return
    table = Table("id", "workspace", "severity", "team", "level", "channel", "recipients", "escalate after")
    for r in items:
        table.add_row(str(r["id"]), r["workspace"], r["severity"], r["team"] or "(all)", str(r["level"]),
                      f"{r['channel']} ({r['channel_type']})", r["recipients"] or "",
                      f"{r['escalate_after_s']:g} s" if r["escalate_after_s"] else "")
    console.print(table if items else "No routes: alerts are recorded but nobody is told.")


@app.command("route-add")
@one_line_errors
def route_add(severity: str, channel: str, workspace: str = typer.Option("default", "--workspace"),
              team: str = typer.Option(None, "--team"), level: int = typer.Option(0, "--level", min=0, max=9),
              recipients: str = typer.Option(None, "--to", help="email routes: comma-separated addresses"),
              escalate_after_s: float = typer.Option(None, "--escalate-after-s")) -> None:
    """Route alerts of SEVERITY (of a team, or all) at a level to the connection named CHANNEL."""
    r = alerts.add_route(context(), _actor(), workspace, severity_=severity, channel=channel, team=team, level=level,
                         recipients=recipients, escalate_after_s=escalate_after_s)
    console.print(f"route {r['id']}: {r['severity']} level {r['level']} -> {r['channel']}", highlight=False)


@app.command("route-delete")
@one_line_errors
def route_delete(route_id: int) -> None:
    alerts.delete_route(context(), _actor(), route_id)
    console.print(f"route {route_id} deleted", highlight=False)


@app.command("run-pass")
@one_line_errors
def run_pass() -> None:
    """Run one operations pass now: timed rules, escalations, scores, delivery (serve/up do it every
    LAKEHOUSE_ALERT_INTERVAL_S)."""
    result = alert_eval.run_pass(context(), force=True)
    assert result is not None
    d = result.delivery
    console.print(f"fired {result.fired}, escalated {result.escalated}, scored {result.scored}; "
                  f"sent {d.sent}, retrying {d.retried}, failed {d.failed}", highlight=False)
    for e in result.errors:
        console.print(f"[red]{e}[/]", highlight=False)


@scores_app.command("show")
@one_line_errors
def score_show(run_id: str) -> None:
    """A finished run's score and its breakdown."""
    s = scores.run_score(context(), _actor(), run_id)
    console.print(f"run {run_id}: [bold]{s['score']:g}[/] / 100", highlight=False)
    table = Table("signal", "value", "penalty", "weight", "points lost")
    for row in s["signals"]:
        table.add_row(row["signal"], json.dumps(row["value"], default=str), f"{row['penalty']:.2f}",
                      f"{row['weight']:g}", f"{row['points_lost']:.1f}")
    console.print(table)


@scores_app.command("weights")
@one_line_errors
def score_weights(workspace: str = typer.Argument("default"),
                  set_: list[str] = typer.Option([], "--set", help="SIGNAL=WEIGHT, repeatable")) -> None:
    """Show (or --set) a workspace's signal weights."""
    ctx = context()
    if set_:
        weights: dict[str, Any] = {}
        for item in set_:
            key, _, value = item.partition("=")
            try:
                weights[key] = float(value)
            except ValueError:
                weights[key] = value
        w = scores.set_weights(ctx, _actor(), workspace, weights)
    else:
        w = scores.get_weights(ctx, _actor(), workspace)
    for name, value in w["weights"].items():
        console.print(f"{name:10} {value:g}", highlight=False)
