"""The `lakehouse` command."""

from __future__ import annotations

import typer

from lakehouse.cli import admin, demo, login, pipelines, runs, server, sql, tables
from lakehouse.cli import alerts as alerts_cli
from lakehouse.cli import audit as audit_cli
from lakehouse.cli import caps as caps_cli
from lakehouse.cli import jobs as jobs_cli
from lakehouse.cli import odoo as odoo_cli
from lakehouse.cli import secrets as secrets_cli
from lakehouse.cli import workspaces as workspaces_cli

app = typer.Typer(help="Lakehouse Control Room.", no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False)
app.command("up")(server.up)
app.command("serve")(server.serve)
app.command("worker")(server.worker)
app.command("demo")(demo.demo)
app.add_typer(admin.db_app, name="db")
app.add_typer(admin.users_app, name="users")
app.add_typer(admin.tokens_app, name="tokens")
app.add_typer(workspaces_cli.app, name="workspaces")
app.add_typer(runs.app, name="runs")
app.command("sql")(sql.sql)
app.command("login")(login.login)
app.command("logout")(login.logout)
app.command("whoami")(login.whoami)
app.add_typer(pipelines.app, name="pipelines")
app.add_typer(jobs_cli.app, name="jobs")
app.command("backfill")(jobs_cli.backfill)
app.add_typer(odoo_cli.app, name="odoo")
app.add_typer(secrets_cli.app, name="secrets")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(tables.app, name="tables")
app.add_typer(alerts_cli.app, name="alerts")
app.add_typer(alerts_cli.scores_app, name="scores")
app.add_typer(caps_cli.app, name="caps")


@app.command("openapi")
def openapi() -> None:
    """Print the OpenAPI document as YAML (what contracts/lakehouse-executor.openapi.yaml holds)."""
    import tempfile

    import yaml

    from lakehouse.api.app import create_app
    from lakehouse.services.context import open_context
    from lakehouse.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        ctx = open_context(Settings(home=tmp))
        print(yaml.safe_dump(create_app(ctx, reaper=False).openapi(), sort_keys=True), end="")
        ctx.db.dispose()


if __name__ == "__main__":
    app()
