"""`lakehouse serve --processes N`: several uvicorn worker processes behind one listening socket.

The parent binds the socket and supervises N children (uvicorn's ``Multiprocess``: it restarts a
child that dies and forwards SIGTERM/SIGINT); each child builds its own context and app from the
settings in its environment (``worker_app``). What must stay single across them does so through
PostgreSQL: long-poll wake-ups and SSE travel by LISTEN/NOTIFY (``services/waker.py``), and the
reaper, the audit sealer and the scheduler run in whichever child holds the leader lease
(``api/leader.py``). SQLite always runs one process: see docs/architecture.md.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("lakehouse.cli")

NO_SCHEDULER_ENV = "LAKEHOUSE_SERVE_NO_SCHEDULER"  # parent → children: `serve --no-scheduler`


def check_database_once(ctx: Any) -> None:
    """Log what an operator should fix about the metadata database (services/protocol.py,
    ``database_warnings``) once for the whole cluster, here in the parent, rather than once per child."""
    from lakehouse.api.app import DB_CHECKED_ENV
    from lakehouse.services import protocol

    for warning in protocol.database_warnings(ctx):
        log.warning(warning, extra={"event": "database_warning"})
    os.environ[DB_CHECKED_ENV] = "1"


def process_count(requested: int | None, settings_value: int, is_sqlite: bool) -> int:
    """How many server processes to run: SQLite 1; otherwise the request, the setting or the cores."""
    if is_sqlite:
        if (requested or settings_value) and (requested or settings_value) > 1:
            log.warning("SQLite serves from one process; --processes is ignored (use PostgreSQL for more)")
        return 1
    n = requested or settings_value or os.cpu_count() or 1
    return max(1, n)


def worker_app() -> Any:
    """The app of one child process (uvicorn calls this factory in each child)."""
    from lakehouse.api import conn_limits
    from lakehouse.api.app import create_app
    from lakehouse.cli.common import setup_logging
    from lakehouse.services.context import open_context
    from lakehouse.settings import Settings

    s = Settings()
    setup_logging(s.log_level)
    ctx = open_context(s)
    proto = conn_limits.LimitedHttpToolsProtocol  # the class uvicorn instantiates per connection here
    proto.header_timeout_s = s.header_timeout_s
    proto.body_timeout_s = s.body_timeout_s
    proto.max_connections = s.max_connections
    return create_app(ctx, reaper=os.environ.get(NO_SCHEDULER_ENV) != "1")


def serve_processes(n: int, host: str, port: int, scheduler: bool, settings: Any) -> None:
    """Run ``n`` server processes on ``host:port`` until SIGTERM/SIGINT (blocks)."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    os.environ["LAKEHOUSE_HOST"] = host  # the children read their settings from the environment
    os.environ["LAKEHOUSE_PORT"] = str(port)
    if not scheduler:
        os.environ[NO_SCHEDULER_ENV] = "1"
    config = uvicorn.Config("lakehouse.cli.processes:worker_app", factory=True, host=host, port=port,
                            workers=n, log_config=None, access_log=False, loop="uvloop",
                            http="lakehouse.api.conn_limits:LimitedHttpToolsProtocol", timeout_graceful_shutdown=5,
                            limit_concurrency=settings.max_connections + 1,
                            timeout_keep_alive=settings.keep_alive_timeout_s,
                            timeout_worker_healthcheck=60)  # a child importing on a loaded machine is slow to answer
    sock = config.bind_socket()
    log.info("serving from %d processes", n, extra={"host": host, "port": port})
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
