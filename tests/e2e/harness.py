"""Real processes for end-to-end tests: `lakehouse serve` and `lakehouse worker` subprocesses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lakehouse(*args: str) -> list[str]:
    return [sys.executable, "-m", "lakehouse.cli.main", *args]


class Server:
    def __init__(self, env: dict[str, str], port: int, log_dir: Path) -> None:
        self.env = env
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.log_dir / f"server-{time.monotonic_ns()}.log").open("wb") as log:  # the child keeps its copy
            self.proc = subprocess.Popen(lakehouse("serve", "--port", str(self.port)), env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill(signal.SIGTERM)  # never leave a half-started server (or its children) behind
        raise RuntimeError("server did not start")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:  # a loaded machine: do not leave it (or its children) running
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        if self.proc:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # children of a multi-process server


def spawn_worker(server: Server, token: str, executor_id: str, log_dir: Path, *extra: str
                 ) -> subprocess.Popen[bytes]:
    with (log_dir / f"worker-{executor_id}.log").open("ab") as log:  # the child keeps its copy
        return subprocess.Popen(lakehouse("worker", "--server", server.base, "--executor-id", executor_id,
                                          "--wait-s", "5", *extra),
                                env={**server.env, "LAKEHOUSE_TOKEN": token}, stdout=log, stderr=subprocess.STDOUT)


@contextmanager
def running_server(home: Path, database_url: str, **settings: Any) -> Iterator[Server]:
    env = {**os.environ, "LAKEHOUSE_HOME": str(home), "LAKEHOUSE_DATABASE_URL": database_url,
           "LAKEHOUSE_PROCESSES": "1"}  # one server process unless a test asks for more (processes=N)
    env.update({f"LAKEHOUSE_{k.upper()}": str(v) for k, v in settings.items()})
    home.mkdir(parents=True, exist_ok=True)
    server = Server(env, free_port(), home)
    server.start()
    try:
        yield server
    finally:
        server.kill(signal.SIGTERM)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait(30)


def wait_for(predicate: Any, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
