"""Table lineage: which tables a phase read and wrote, and the graph around a table.

Names are fully qualified as SQL sees them: ``bronze.account_move``, ``silver.invoices``; sources
outside the lake may use any dotted name (``odoo.account_move``). Edges are kept per workspace and
environment; an edge is stored once and remembers the latest run and phase that produced it.
"""

from __future__ import annotations

import re
from collections import deque
from datetime import datetime
from typing import Any

from lakehouse.domain.principal import Principal
from lakehouse.domain.runs import ENVIRONMENTS
from lakehouse.services import workspaces
from lakehouse.services.context import Context
from lakehouse.services.errors import InvalidInput
from lakehouse.store import lineage as store
from lakehouse.store.lineage import EdgeRow, NewEdge
from lakehouse.store.types_public import Connection

_NAME_RE = re.compile(r"^[a-z0-9_][a-z0-9_$-]*(\.[a-z0-9_][a-z0-9_$-]*)+$")
_LAYERS = ("bronze", "silver", "gold")


def normalize(name: str) -> str:
    """``Bronze.Account_Move `` → ``bronze.account_move``; ``InvalidInput`` for a name that is not dotted."""
    n = name.strip().lower() if isinstance(name, str) else ""
    if not _NAME_RE.match(n) or len(n) > 300:
        raise InvalidInput(f"lineage names are dotted, like bronze.account_move, not {name!r}",
                           code="invalid_lineage")
    return n


def record_edges(conn: Connection, workspace_id: int, env: str, run_id: str | None, phase: str | None,
                 inputs: list[str], outputs: list[str], now: datetime) -> int:
    """Upsert one edge per (input, output) in the caller's transaction; returns how many were written.
    An input equal to its output (an incremental merge reading its own table) is not an edge.
    A name that is not dotted raises ``InvalidInput`` (``invalid_lineage``)."""
    if env not in ENVIRONMENTS:
        raise InvalidInput(f"environment must be one of {', '.join(ENVIRONMENTS)}", code="invalid_environment")
    srcs = sorted({normalize(n) for n in inputs})
    tgts = sorted({normalize(n) for n in outputs})
    edges = [NewEdge(s, t) for s in srcs for t in tgts if s != t]
    return store.upsert_edges(conn, workspace_id, env, edges, run_id, phase, now)


def record(ctx: Context, principal: Principal, env: str, run_id: str | None, phase: str | None,
           inputs: list[str], outputs: list[str], workspace: str = workspaces.DEFAULT) -> int:
    """:func:`record_edges` in its own transaction, for callers outside one."""
    ws_id = workspaces.resolve_for(ctx, principal, workspace)
    with ctx.db.write() as conn:
        return record_edges(conn, ws_id, env, run_id, phase, inputs, outputs, ctx.clock())


def graph(ctx: Context, principal: Principal, table: str, env: str = "dev", workspace: str = workspaces.DEFAULT,
          depth: int | None = None) -> dict[str, Any]:
    """Nodes and edges upstream and downstream of ``table``, transitively (up to ``depth`` hops).

    ``{"table", "env", "workspace", "nodes": [{"id", "layer", "name", "role", "distance"}],
    "edges": [{"source", "target", "run_id", "phase", "updated_at"}]}``; ``role`` is ``focus``,
    ``upstream`` or ``downstream``. A table of another workspace is a 404 (the workspace is)."""
    if env not in ENVIRONMENTS:
        raise InvalidInput(f"environment must be one of {', '.join(ENVIRONMENTS)}", code="invalid_environment")
    focus = normalize(table)
    ws_id = workspaces.resolve_for(ctx, principal, workspace)
    with ctx.db.read() as conn:
        rows = store.edges_of(conn, ws_id, env)
    down: dict[str, list[EdgeRow]] = {}
    up: dict[str, list[EdgeRow]] = {}
    for r in rows:
        down.setdefault(r.source, []).append(r)
        up.setdefault(r.target, []).append(r)
    nodes: dict[str, dict[str, Any]] = {focus: _node(focus, "focus", 0)}
    edges: dict[tuple[str, str], EdgeRow] = {}
    for role, index, far in (("upstream", up, "source"), ("downstream", down, "target")):
        seen = {focus}
        queue = deque([(focus, 0)])
        while queue:
            name, dist = queue.popleft()
            if depth is not None and dist >= depth:
                continue
            for edge in index.get(name, []):
                edges[(edge.source, edge.target)] = edge
                other = edge.source if far == "source" else edge.target
                if other in seen:
                    continue
                seen.add(other)
                nodes.setdefault(other, _node(other, role, dist + 1))
                queue.append((other, dist + 1))
    return {
        "table": focus, "env": env, "workspace": workspace,
        "nodes": sorted(nodes.values(), key=lambda n: ({"upstream": 0, "focus": 1, "downstream": 2}[n["role"]],
                                                       -n["distance"] if n["role"] == "upstream" else n["distance"],
                                                       n["id"])),
        "edges": [{"source": e.source, "target": e.target, "run_id": e.run_id, "phase": e.phase,
                   "updated_at": e.created_at} for _, e in sorted(edges.items())],
    }


def _node(name: str, role: str, distance: int) -> dict[str, Any]:
    head, _, rest = name.partition(".")
    return {"id": name, "layer": head if head in _LAYERS else None, "name": rest if head in _LAYERS else name,
            "role": role, "distance": distance}
