"""Workspace scoping ("row-level security"), in one place.

A principal with ``workspace_ids=None`` (admins, the system, a member of a shared install) sees every
workspace; any other sees only the rows whose workspace is in its set (an empty set: none). Every store
read that lists or fetches rows on behalf of a principal filters through :func:`visible`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, Select


def visible(stmt: Select[Any], column: ColumnElement[Any], workspace_ids: Collection[int] | None) -> Select[Any]:
    """``stmt`` restricted to the rows whose ``column`` (a workspace id) is in ``workspace_ids``;
    unchanged when ``workspace_ids`` is None (every workspace)."""
    if workspace_ids is None:
        return stmt
    return stmt.where(column.in_(sorted(workspace_ids)))
