"""The control plane served by uvicorn on a free 127.0.0.1 port in a thread, and real Iceberg clients
(pyiceberg's ``RestCatalog``, DuckDB's iceberg extension) pointed at its ``/iceberg`` catalog."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn

from lakehouse.api.app import create_app
from lakehouse.domain.principal import Principal
from lakehouse.lake.catalog import close_catalogs
from lakehouse.services import auth, users, workspaces
from lakehouse.services.context import Context

ADMIN = Principal(name="root", role="admin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    ctx: Context
    base: str  # http://127.0.0.1:PORT
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"{self.base}/iceberg"

    def catalog(self, who: str = "engineer", warehouse: str | None = None, **props: str) -> Any:
        """A pyiceberg RestCatalog as ``who`` (a bearer token; ``credential`` in ``props`` for OAuth)."""
        from pyiceberg.catalog.rest import RestCatalog

        conf: dict[str, str] = {"uri": self.uri, **props}
        if "credential" not in props:
            conf["token"] = self.tokens[who]
        if warehouse:
            conf["warehouse"] = warehouse
        return RestCatalog("rest", **conf)


def _serve(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off", ws="none"))
    thread = threading.Thread(target=server.run, name="uvicorn-iceberg", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return server, thread


@pytest.fixture
def served(ctx: Context) -> Iterator[Served]:
    """Users: ``engineer``, ``analyst``, ``viewer`` (default workspace), ``admin``; workspace ``acme``."""
    workspaces.create(ctx, "acme")
    tokens: dict[str, str] = {}
    for role in ("engineer", "analyst", "viewer"):
        auth.create_user(ctx, role, role, None)
        users.set_membership(ctx, ADMIN, role, "acme", True)
        tokens[role] = auth.create_token(ctx, role)
    auth.create_user(ctx, "admin", "admin", None)
    tokens["admin"] = auth.create_token(ctx, "admin")
    port = free_port()
    server, thread = _serve(create_app(ctx, reaper=False), port)
    try:
        yield Served(ctx, f"http://127.0.0.1:{port}", tokens)
    finally:
        server.should_exit = True
        thread.join(10)
        close_catalogs()


@pytest.fixture
def rows() -> Callable[..., Any]:
    import pyarrow as pa

    def make(ids: list[int], tag: str = "x") -> pa.Table:
        return pa.table({"id": pa.array(ids, pa.int64()), "tag": pa.array([tag] * len(ids), pa.string())})

    return make
