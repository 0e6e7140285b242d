"""Roles and what each may do."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    ENGINEER = "engineer"
    ANALYST = "analyst"
    VIEWER = "viewer"
    EXECUTOR = "executor"


class Action(StrEnum):
    READ = "read"  # runs, events, artifacts, executors
    RUN_CREATE = "run.create"
    RUN_CANCEL = "run.cancel"
    EXECUTE = "execute"  # claim, heartbeat, events, artifacts, complete, fail
    QUERY = "query"  # SQL against the lakehouse
    ADMIN = "admin"  # users, tokens, audit


PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.ENGINEER: frozenset({Action.READ, Action.RUN_CREATE, Action.RUN_CANCEL, Action.QUERY, Action.EXECUTE}),
    Role.ANALYST: frozenset({Action.READ, Action.QUERY}),
    Role.VIEWER: frozenset({Action.READ}),
    Role.EXECUTOR: frozenset({Action.EXECUTE, Action.READ}),
}


def allowed(role: str, action: Action) -> bool:
    try:
        return action in PERMISSIONS[Role(role)]
    except ValueError:
        return False
