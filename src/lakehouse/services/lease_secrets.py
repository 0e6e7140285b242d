"""Connection secrets for a lease: what a worker needs of a stored connection, for the phase it holds.

A phase that reads a source named by connection (``sources.<x>.connection: NAME`` in a pipeline spec)
asks the control plane over the contract (``POST /ops/runs/{run_id}/connections/{name}``). The answer
goes only to the current lease holder of a phase of that run, only for a connection the run declared,
in the run's workspace and environment, and only while the run's creator may still use connections
there; the target is checked against the egress allow-list first. The worker keeps the secret in
memory for that phase only; it is never written to events, artifacts, manifests, logs or any other
answer. The run's trail records which connection was handed out (``CONNECTION_USED``, without secrets).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from lakehouse.domain.events import EventType
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.services import connections, lease_scope, runs
from lakehouse.services.context import Context
from lakehouse.services.errors import Forbidden, InvalidInput, LeaseLost, NotFound


def declared_connections(input_manifest: dict[str, Any]) -> set[str]:
    """Connection names a run declared: its pipeline spec's sources and a job's ``connections``."""
    names: set[str] = set()
    spec = input_manifest.get("spec")
    if isinstance(spec, dict):
        for source in (spec.get("sources") or {}).values():
            if isinstance(source, dict) and isinstance(source.get("connection"), str):
                names.add(source["connection"])
    for name in input_manifest.get("connections") or []:
        if isinstance(name, str):
            names.add(name)
    return names


def for_lease(ctx: Context, principal: Principal, run_id: str, lease_token: str, name: str) -> dict[str, Any]:
    from lakehouse.store import queue

    run, phase = lease_scope.held_lease(ctx, principal, run_id, lease_token)
    if name not in declared_connections(run["input_manifest"] or {}):
        raise Forbidden(f"this run did not declare connection {name!r}", code="connection_not_declared")
    creator = lease_scope.acting_as(ctx, run["created_by"] or "", run["workspace_id"], Action.CONNECTION_READ)
    workspace = runs.get_run(ctx, run_id, principal)["workspace"]
    match = [c for c in connections.list_connections(ctx, creator, run["environment"])
             if c["name"] == name and c["workspace"] == workspace]
    if not match:
        raise NotFound(f"no connection {name!r} in {workspace}/{run['environment']}", code="connection_not_found")
    config, secrets = connections.resolve(ctx, creator, match[0]["id"])
    url = source_url(match[0]["type"], config, secrets)
    from lakehouse.lake.catalog import same_database

    if url and same_database(url, ctx.settings.database_url):  # workers are not told it: refuse it here
        raise Forbidden("a pipeline may not read the control plane's metadata database", code="metadata_database")
    with ctx.db.write() as conn:
        if queue.find_lease(conn, run_id, lease_token) is None:  # revoked meanwhile: hand out nothing
            raise LeaseLost("the lease is no longer held")
        queue.append_events(conn, run_id, [{
            "type": EventType.CONNECTION_USED.value, "ts": ctx.clock(), "level": "info", "phase": phase["name"],
            "message": f"connection {name} handed to the lease holder", "payload": {
                "connection": name, "type": match[0]["type"], "executor_id": phase["executor_id"]}}])
    return {"name": name, "type": match[0]["type"], "config": config, "secrets": secrets, "url": url}


def source_url(type_: str, config: dict[str, Any], secrets: dict[str, str]) -> str | None:
    """The source URL the connectors open, for the source kinds ingestion reads."""
    if type_ == "postgres":
        user = quote(str(config.get("user", "")), safe="")
        password = secrets.get("password")
        auth_part = f"{user}:{quote(password, safe='')}@" if password else f"{user}@"
        query = f"?sslmode={quote(str(config['sslmode']))}" if config.get("sslmode") else ""
        return f"postgresql://{auth_part}{config['host']}:{config.get('port', 5432)}/{config['database']}{query}"
    if type_ == "sqlite":
        return f"sqlite:///{config['path']}"
    return None


def check_name(name: str) -> str:
    if not name or len(name) > 100 or "\x00" in name:
        raise InvalidInput("a connection name has 1-100 characters", code="invalid_name")
    return name
