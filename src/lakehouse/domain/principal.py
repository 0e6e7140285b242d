"""Who is acting, and what they may do: pure (roles from domain/roles.py, errors from domain/errors.py).
services/auth.py builds a principal from a token, a password or a session; every service function
takes one and checks its action first."""

from __future__ import annotations

from dataclasses import dataclass

from lakehouse.domain.errors import Forbidden, NotFound
from lakehouse.domain.roles import Action, Role, allowed


@dataclass(frozen=True)
class Principal:
    """Who is acting: a user through a token, a session, or the local CLI (``system``)."""

    name: str
    role: str
    user_id: int | None = None
    workspace_ids: frozenset[int] | None = None  # None: every workspace (admins, system)
    # the role held in each workspace (the membership's role capped by ``role``); absent: ``role``
    workspace_roles: tuple[tuple[int, str], ...] = ()

    def can(self, action: Action) -> bool:
        return allowed(self.role, action)

    def require(self, action: Action) -> None:
        if not self.can(action):
            raise Forbidden(f"role {self.role} may not {action.value}", code="forbidden")

    def can_see(self, workspace_id: int) -> bool:
        return self.workspace_ids is None or workspace_id in self.workspace_ids

    def role_in(self, workspace_id: int) -> str:
        """The role this principal acts with in one workspace."""
        return dict(self.workspace_roles).get(workspace_id, self.role)

    def can_in(self, action: Action, workspace_id: int) -> bool:
        return self.can_see(workspace_id) and allowed(self.role_in(workspace_id), action)

    def require_in(self, action: Action, workspace_id: int) -> None:
        """Check ``action`` within one workspace: a workspace the principal is not a member of is
        ``NotFound`` (its existence is not disclosed), a role that may not act there is ``Forbidden``."""
        if not self.can_see(workspace_id):
            raise NotFound("workspace not found", code="workspace_not_found")
        role = self.role_in(workspace_id)
        if not allowed(role, action):
            raise Forbidden(f"role {role} may not {action.value} in this workspace", code="forbidden")


SYSTEM = Principal(name="system", role=Role.ADMIN.value)
