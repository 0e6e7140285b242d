"""`lakehouse serve`, `lakehouse up` and `lakehouse worker`: processes of the control plane."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import typer

from lakehouse.cli.common import console, context, fail, one_line_errors, settings, setup_logging
from lakehouse.services import auth
from lakehouse.services.context import Context
from lakehouse.store.db import wait_until_reachable

log = logging.getLogger("lakehouse.cli")
LOCAL_EXECUTOR = "local-executor"


def build_server(ctx: Context, host: str, port: int, scheduler: bool = True) -> Any:
    import uvicorn

    from lakehouse.api import conn_limits
    from lakehouse.api.app import create_app

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            ctx.waker.close()  # long-polls and streams answer now instead of at their timeout
            super().handle_exit(sig, frame)

    s = ctx.settings
    app = create_app(ctx, reaper=scheduler)
    http = conn_limits.protocol_class(s.header_timeout_s, s.body_timeout_s, s.max_connections)
    # the protocol closes connections beyond max_connections; uvicorn's limit also counts running requests
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            loop="uvloop", http=http, timeout_graceful_shutdown=5,
                            limit_concurrency=s.max_connections + 1, timeout_keep_alive=s.keep_alive_timeout_s)
    return Server(config)


def print_admin(ctx: Context, base: str) -> None:
    created = auth.bootstrap_admin(ctx)
    if created:
        name, password = created
        pw_file = ctx.settings.home / "admin-password.txt"
        pw_file.write_text(password + "\n")
        pw_file.chmod(0o600)
        console.print(f"[bold green]admin created[/]: log in at {base}/login as [bold]{name}[/] "
                      f"with the password in {pw_file} (change it after the first login)")
    else:
        console.print(f"Control Room at [bold]{base}[/] (log in with an existing user)")


def executor_token(ctx: Context) -> str:
    """The local workers' token: kept in ``$LAKEHOUSE_HOME/executor.token`` (0600) and reused while it
    is valid, so that every ``lakehouse up`` does not mint (and leave behind) a new one."""
    from lakehouse.services.errors import ServiceError

    path = ctx.settings.home / "executor.token"
    if path.is_file():
        token = path.read_text().strip()
        try:
            if auth.authenticate_token(ctx, token).role == "executor":
                return token
        except ServiceError:
            pass  # revoked, expired or from another database: mint a new one
    try:
        auth.create_user(ctx, LOCAL_EXECUTOR, "executor", None)
    except ServiceError:
        pass  # it exists
    token = auth.create_token(ctx, LOCAL_EXECUTOR, "executor", name="lakehouse up")
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


# what a worker must not hold: it reaches the catalog over HTTP under its leases (docs/security.md)
CONTROL_PLANE_ONLY = ("LAKEHOUSE_DATABASE_URL", "LAKEHOUSE_SECRET_KEY")


def worker_environment(token: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a local worker: this process's, without the metadata database URL and the
    secret key, plus the executor token."""
    base = dict(os.environ if environ is None else environ)
    return {k: v for k, v in base.items() if k.upper() not in CONTROL_PLANE_ONLY} | {"LAKEHOUSE_TOKEN": token}


def spawn_workers(n: int, server: str, token: str, extra: list[str] | None = None,
                  log_level: str | None = None, settings_env: dict[str, str] | None = None
                  ) -> list[subprocess.Popen[bytes]]:
    """Start ``n`` local workers; ``settings_env`` is what this process hands them explicitly (its
    home, a demo's source URL) on top of the scrubbed environment."""
    env = worker_environment(token) | (settings_env or {})
    if log_level:
        env["LAKEHOUSE_LOG_LEVEL"] = log_level
    procs = []
    for i in range(n):
        cmd = [sys.executable, "-m", "lakehouse.cli.main", "worker", "--server", server,
               "--executor-id", f"local-{os.getpid()}-{i + 1}", *(extra or [])]
        procs.append(subprocess.Popen(cmd, env=env))
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()


class Running:
    """The control plane in this process (uvicorn in a thread) plus worker subprocesses."""

    def __init__(self, ctx: Context, host: str, port: int, workers: int, scheduler: bool = True,
                 worker_log_level: str | None = None, worker_env: dict[str, str] | None = None) -> None:
        self.worker_log_level = worker_log_level
        # the workers' settings, passed down explicitly: this process's home (never the database or key)
        self.worker_env = {"LAKEHOUSE_HOME": str(ctx.settings.home)} | (worker_env or {})
        self.ctx = ctx
        self.base = f"http://{host}:{port}"
        self.server = build_server(ctx, host, port, scheduler)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.workers_n = workers
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                fail(f"the server did not start on {self.base} (is the port taken?)")
            time.sleep(0.02)
        if self.workers_n:
            self.procs = spawn_workers(self.workers_n, self.base, executor_token(self.ctx),
                                       log_level=self.worker_log_level, settings_env=self.worker_env)
        return self

    def __exit__(self, *exc: Any) -> None:
        stop_workers(self.procs)
        self.ctx.waker.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def wait_forever(self) -> None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                if not self.thread.is_alive():
                    break
        except KeyboardInterrupt:
            pass
        console.print("stopping …")


def _log_format(value: str | None) -> str | None:
    """``--log-format``, checked; also handed to the processes this one starts (its workers)."""
    if value is None:
        return None
    if value not in ("auto", "json", "text"):
        fail(f"--log-format must be auto, json or text, not {value!r}")
    os.environ["LAKEHOUSE_LOG_FORMAT"] = value
    return value


@one_line_errors
def serve(port: int = typer.Option(None, help="HTTP port (default LAKEHOUSE_PORT or 8000)"),
          host: str = typer.Option(None), no_scheduler: bool = typer.Option(False, "--no-scheduler"),
          processes: int = typer.Option(None, min=1, max=64,
                                        help="server processes on PostgreSQL (default LAKEHOUSE_PROCESSES or "
                                             "one per core); SQLite runs one"),
          log_format: str = typer.Option(None, "--log-format",
                                        help="log lines: auto, json or text (default LAKEHOUSE_LOG_FORMAT)")) -> None:
    """API + UI (+ scheduler and lease reaper unless --no-scheduler)."""
    from lakehouse.cli.processes import check_database_once, process_count, serve_processes

    setup_logging(settings().log_level, _log_format(log_format))
    wait_until_reachable(settings().database_url, settings().database_wait_s)
    ctx = context(port=port, host=host)
    s = ctx.settings
    print_admin(ctx, f"http://{s.host}:{s.port}")
    n = process_count(processes, s.processes, ctx.db.is_sqlite)
    if n > 1:
        check_database_once(ctx)
        ctx.db.dispose()
        serve_processes(n, s.host, s.port, not no_scheduler, s)
        return
    build_server(ctx, s.host, s.port, not no_scheduler).run()


@one_line_errors
def up(port: int = typer.Option(None), host: str = typer.Option(None),
       workers: int = typer.Option(2, min=0, max=64, help="local worker processes"),
       log_format: str = typer.Option(None, "--log-format",
                                        help="log lines: auto, json or text (default LAKEHOUSE_LOG_FORMAT)")) -> None:
    """API + UI + scheduler + N local workers in one process tree."""
    setup_logging(settings().log_level, _log_format(log_format))
    wait_until_reachable(settings().database_url, settings().database_wait_s)
    ctx = context(port=port, host=host)
    s = ctx.settings
    print_admin(ctx, f"http://{s.host}:{s.port}")
    with Running(ctx, s.host, s.port, workers) as running:
        console.print(f"{workers} local workers started; Ctrl-C stops everything")
        running.wait_forever()


def worker(server: str = typer.Option(None, help="control plane URL (default http://127.0.0.1:LAKEHOUSE_PORT)"),
           token: str = typer.Option(None, envvar="LAKEHOUSE_TOKEN", help="executor API token"),
           capabilities: str = typer.Option(None, help="comma-separated phase types (default: every handler)"),
           executor_id: str = typer.Option(None, "--executor-id"),
           max_phases: int = typer.Option(1, min=1, max=100, help="phases per claim (batching)"),
           wait_s: float = typer.Option(30.0, min=0, max=60, help="long-poll seconds"),
           once: bool = typer.Option(False, help="exit when there is no work")) -> None:
    """One executor process: claim → run handler → heartbeat → complete/fail."""
    from lakehouse.lake.lease import RestLake
    from lakehouse.settings import Settings
    from lakehouse.worker.client import ExecutorClient
    from lakehouse.worker.loop import Worker

    settings = Settings()  # built once at the worker's edge, passed down to every phase
    settings.secret_key = ""  # a worker never needs the key (nor the database: the catalog is over HTTP)
    setup_logging(settings.log_level)
    extra = sorted(k for k in os.environ if k.upper() in CONTROL_PLANE_ONLY)
    if extra:  # named, never shown: a worker does not need them, the operator should not hand them out
        log.warning("this worker's environment holds control-plane secrets it does not use; remove them",
                    extra={"variables": extra})
    if not token:
        fail("no token: pass --token or set LAKEHOUSE_TOKEN (create one with `lakehouse tokens create`)")
    url = server or f"http://127.0.0.1:{settings.port}"
    caps = [c.strip() for c in capabilities.split(",") if c.strip()] if capabilities else None
    client = ExecutorClient(url, token)
    lake = RestLake(url, token, settings)  # every phase's catalog: <server>/iceberg under its lease
    w = Worker(client, executor_id=executor_id, capabilities=caps, wait_s=wait_s, max_phases=max_phases, once=once,
               settings=settings, lake=lake)
    w.install_signals()
    log.info("worker started", extra={"executor_id": w.executor_id, "capabilities": w.capabilities, "server": url})
    done = w.run()
    log.info("worker stopped", extra={"executor_id": w.executor_id, "phases_done": done})
