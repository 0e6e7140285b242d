"""Roles and what each may do: the single permission matrix (documented in docs/permissions.md).

Services call ``Principal.require(action)``; pages and routes only hide what a role may not do.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    ENGINEER = "engineer"
    ANALYST = "analyst"
    VIEWER = "viewer"
    EXECUTOR = "executor"


class Action(StrEnum):
    READ = "read"  # pipelines, catalog, lineage, query history (and everything RUN_READ covers)
    RUN_READ = "run.read"  # runs, events, artifacts, executors: the contract's reads
    RUN_CREATE = "run.create"  # start, rerun
    RUN_CANCEL = "run.cancel"
    EXECUTE = "execute"  # claim, heartbeat, events, artifacts, complete, fail
    QUERY = "query"  # SQL against the lakehouse
    CONNECTION_READ = "connection.read"  # list connections and test them (never their secrets)
    CONNECTION_MANAGE = "connection.manage"  # create, edit, delete connections
    JOB_MANAGE = "job.manage"  # create, edit, apply, pause, archive jobs
    JOB_RUN = "job.run"  # run a job now, rerun a job run, backfills
    JOB_PROMOTE = "job.promote"  # ask for a job version to reach stage or prod (through the gates)
    JOB_APPROVE = "job.approve"  # approve or reject a promotion (the workspace's gates name the role)
    ALERT_MANAGE = "alert.manage"  # alert rules, the routing matrix, score weights
    ALERT_RESPOND = "alert.respond"  # acknowledge and resolve alerts
    CAP_MANAGE = "cap.manage"  # set and delete runtime caps (admins and workspace admins only)
    CATALOG_WRITE = "catalog.write"  # create, commit, rename, register, drop Iceberg tables/namespaces (REST)
    USER_ADMIN = "user.admin"  # users, roles, tokens of others
    AUDIT_VIEW = "audit.view"
    ADMIN = "admin"  # everything else reserved to admins (key rotation, workspaces)


PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.ENGINEER: frozenset({Action.READ, Action.RUN_READ, Action.RUN_CREATE, Action.RUN_CANCEL, Action.QUERY,
                              Action.CONNECTION_READ, Action.CONNECTION_MANAGE, Action.JOB_MANAGE,
                              Action.JOB_RUN, Action.JOB_PROMOTE, Action.JOB_APPROVE,
                              Action.ALERT_MANAGE, Action.ALERT_RESPOND, Action.CATALOG_WRITE}),
    Role.ANALYST: frozenset({Action.READ, Action.RUN_READ, Action.QUERY, Action.CONNECTION_READ}),
    Role.VIEWER: frozenset({Action.READ, Action.RUN_READ}),
    # executors use the contract's calls only: no catalog, lineage or query history (docs/security.md)
    Role.EXECUTOR: frozenset({Action.EXECUTE, Action.RUN_READ}),
}


def allowed(role: str, action: Action) -> bool:
    try:
        return action in PERMISSIONS[Role(role)]
    except ValueError:
        return False
