"""What the control plane does on behalf of a lease holder (``query`` phases, connection secrets): the
lease check and the run's creator as the principal it acts as."""

from __future__ import annotations

from typing import Any

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.domain.roles import Action
from lakehouse.services import auth
from lakehouse.services.context import Context
from lakehouse.services.errors import Forbidden, LeaseLost, NotFound


def held_lease(ctx: Context, principal: Principal, run_id: str, lease_token: str) -> tuple[Any, Any]:
    """(run, phase) of a lease the executor holds now; 404 for a run it cannot see, 409 for a lost lease."""
    from lakehouse.store import queue

    principal.require(Action.EXECUTE)
    with ctx.db.read() as conn:
        run = queue.get_run(conn, run_id)
        if run is None or not principal.can_see(run["workspace_id"]):
            raise NotFound(f"run {run_id} not found", code="run_not_found")
        phase = queue.find_lease(conn, run_id, lease_token)
        if phase is None:
            raise LeaseLost("the lease is no longer held (expired and requeued, cancelled or finished)")
    return run, phase


def acting_as(ctx: Context, created_by: str, workspace_id: int, action: Action) -> Principal:
    """The run's creator as it is now, limited to the run's workspace; a creator who is gone, disabled or
    may no longer do ``action`` there has nothing done on their behalf."""
    if created_by == SYSTEM.name:
        return Principal(name=SYSTEM.name, role=SYSTEM.role, workspace_ids=frozenset({workspace_id}))
    creator = auth.principal_for_user(ctx, created_by)
    if creator is None or not creator.can_in(action, workspace_id):
        raise Forbidden(f"the run's creator {created_by!r} may not {action.value} in this workspace now",
                        code="creator_not_allowed")
    return Principal(name=creator.name, role=creator.role_in(workspace_id), user_id=creator.user_id,
                     workspace_ids=frozenset({workspace_id}))
