"""Plumbing shared by the benchmarks: a metadata database per backend, the CLI, a `lakehouse serve`
subprocess and `lakehouse worker` subprocesses, an HTTP client, percentiles.

Everything here talks to 127.0.0.1 only and cleans up after itself (processes killed, temp folders and
the benchmark's PostgreSQL database dropped) even when a step fails.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LAKEHOUSE = str(BIN / "lakehouse")
PG_ADMIN_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    xs = sorted(values)
    k = max(0, min(len(xs) - 1, int(-(-p * len(xs) // 100)) - 1))
    return xs[k]


def summary_ms(values_s: list[float]) -> dict[str, float | int]:
    ms = [v * 1000 for v in values_s]
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 2), "p90_ms": round(pct(ms, 90), 2),
            "p99_ms": round(pct(ms, 99), 2), "min_ms": round(min(ms), 2) if ms else float("nan"),
            "max_ms": round(max(ms), 2) if ms else float("nan"),
            "mean_ms": round(sum(ms) / len(ms), 2) if ms else float("nan")}


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


# --- CPU accounting -----------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _postgres_cpu(db: str | None) -> dict[int, tuple[bool, float]]:
    """pid -> (serves the benchmark's database, CPU seconds) of every PostgreSQL process."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if (d / "comm").read_text().strip() == "postgres":
                    cmd = (d / "cmdline").read_bytes().decode(errors="replace")
                    out[int(d.name)] = (bool(db) and f" {db} " in cmd, _proc_cpu(int(d.name)))
    return out


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    try:
        vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return (sum(vals) - idle) / _TICK, sum(vals) / _TICK


class CpuMeter:
    """CPU seconds used over a window by the server, the workers, PostgreSQL (its backends serving the
    benchmark's database, and all of it), this process, and everything else on the machine."""

    def __init__(self, groups: dict[str, list[int]], pg_db: str | None = None) -> None:
        self.groups = groups
        self.pg_db = pg_db

    def _snap(self) -> dict[str, Any]:
        t = os.times()
        busy, total = _machine_busy()
        return {"groups": {g: sum(_proc_cpu(p) for p in pids) for g, pids in self.groups.items()},
                "pg": _postgres_cpu(self.pg_db), "bench_client": t.user + t.system,
                "busy": busy, "total": total, "wall": time.monotonic()}

    def __enter__(self) -> CpuMeter:
        self.start = self._snap()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.end = self._snap()

    def result(self, per: int | None = None) -> dict[str, Any]:
        a, b = self.start, self.end
        d = {g: b["groups"][g] - a["groups"][g] for g in self.groups}
        pg_all = pg_db = 0.0
        for pid, (mine, cpu) in b["pg"].items():
            delta = cpu - a["pg"].get(pid, (mine, 0.0))[1]
            pg_all += delta
            pg_db += delta if mine else 0.0
        if self.pg_db:
            d["postgres_bench_db"] = pg_db
        d["postgres_all"] = pg_all
        d["bench_client"] = b["bench_client"] - a["bench_client"]
        busy, total = b["busy"] - a["busy"], b["total"] - a["total"]
        d["everything_else"] = max(0.0, busy - sum(v for k, v in d.items() if k != "postgres_bench_db"))
        out: dict[str, Any] = {"wall_s": round(b["wall"] - a["wall"], 3),
                               "machine_busy_pct": round(100 * busy / total, 1) if total else None,
                               "cpu_s": {k: round(v, 3) for k, v in d.items()}}
        if per:
            out["cpu_ms_per_phase"] = {k: round(1000 * v / per, 3) for k, v in d.items()}
        return out


# --- backends -----------------------------------------------------------------------------------

@dataclass
class Backend:
    """A fresh metadata database and LAKEHOUSE_HOME; ``env`` is what every subprocess gets."""

    name: str
    home: Path
    database_url: str
    pg_db: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_postgres(self) -> bool:
        return self.pg_db is not None


def code_info(src: Path | None) -> dict[str, Any]:
    """Which code the processes run: the repository's working tree (its HEAD and whether src/ has
    uncommitted changes) or another source tree given with --src."""
    if src is not None:
        return {"src": str(src), "note": "PYTHONPATH points the server, workers and CLI at this tree"}
    info: dict[str, Any] = {"src": str(REPO / "src")}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["git_head"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                          capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10).stdout.splitlines()
        info["uncommitted_src_files"] = len(dirty)
    return info


@contextlib.contextmanager
def backend(name: str, src: Path | None = None) -> Iterator[Backend]:
    home = Path(tempfile.mkdtemp(prefix=f"lh-bench-{name}-"))
    pg_db = None
    try:
        if name == "postgres":
            import psycopg

            pg_db = f"lakehouse_bench_{os.getpid()}"
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{pg_db}"')
                c.execute(f'CREATE DATABASE "{pg_db}"')
                info = {k: c.execute(f"SHOW {k}").fetchone()[0]  # type: ignore[index]
                        for k in ("server_version", "synchronous_commit", "fsync", "shared_buffers")}
            log(f"[{name}] created database {pg_db} ({info})")
            url = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{pg_db}"
        elif name == "sqlite":
            url = f"sqlite:///{home / 'control.db'}"
        else:
            raise ValueError(f"unknown backend {name!r}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
        env.update({"LAKEHOUSE_HOME": str(home), "LAKEHOUSE_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"})
        if src is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [env.get("PYTHONPATH")])])
        yield Backend(name=name, home=home, database_url=url, pg_db=pg_db, env=env)
    finally:
        if pg_db is not None:
            try:
                import psycopg

                with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as c:
                    c.execute(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)')
                log(f"[{name}] dropped database {pg_db}")
            except Exception as exc:  # never hide the benchmark's own error behind this one
                log(f"[{name}] could not drop database {pg_db}: {exc}")
        shutil.rmtree(home, ignore_errors=True)


def cli(b: Backend, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
    r = subprocess.run([LAKEHOUSE, *args], env=b.env, input=stdin, capture_output=True, text=True,
                       timeout=timeout, cwd=b.home)
    if r.returncode != 0:
        raise RuntimeError(f"lakehouse {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r.stdout


def prepare(b: Backend) -> dict[str, str]:
    """Migrate, then create an admin with an engineer token and an executor with an executor token."""
    t = time.monotonic()
    cli(b, "db", "upgrade")
    cli(b, "users", "create", "bench-admin", "--role", "admin", "--password-stdin",
        stdin="bench-admin-password\n")
    engineer = cli(b, "tokens", "create", "--user", "bench-admin", "--role", "engineer",
                   "--name", "bench").strip().splitlines()[-1]
    cli(b, "users", "create", "bench-executor", "--role", "executor")
    executor = cli(b, "tokens", "create", "--user", "bench-executor", "--role", "executor",
                   "--name", "bench").strip().splitlines()[-1]
    log(f"[{b.name}] migrated and created users/tokens in {time.monotonic() - t:.1f} s")
    return {"engineer": engineer, "executor": executor}


# --- processes ----------------------------------------------------------------------------------

class Procs:
    """Subprocesses this benchmark started; all of them are stopped on exit, by pid."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.items: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, label: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        out = (self.logdir / f"{label}.log").open("ab")
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             cwd=self.logdir)
        out.close()
        self.items.append((label, p))
        return p

    def stop(self, p: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait(5)
        self.items = [(lbl, q) for lbl, q in self.items if q is not p]

    def stop_all(self) -> None:
        for _, p in list(reversed(self.items)):
            self.stop(p)

    def tail(self, label: str, n: int = 20) -> str:
        path = self.logdir / f"{label}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


class Server:
    """`lakehouse serve --port P` as a subprocess with the backend's environment."""

    def __init__(self, b: Backend, procs: Procs, extra_cmd: list[str] | None = None) -> None:
        self.b = b
        self.procs = procs
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = extra_cmd or [LAKEHOUSE]
        self.proc = procs.spawn("server", [*cmd, "serve", "--port", str(self.port)], b.env)
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.procs.tail('server')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"server not healthy in {timeout} s:\n{self.procs.tail('server')}")

    @property
    def pid(self) -> int:
        return self.proc.pid


def spawn_worker(server: Server, token: str, label: str, max_phases: int = 1) -> subprocess.Popen[bytes]:
    env = {**server.b.env, "LAKEHOUSE_TOKEN": token}
    return server.procs.spawn(label, [LAKEHOUSE, "worker", "--server", server.base, "--executor-id", label,
                                      "--max-phases", str(max_phases), "--wait-s", "30"], env)


# --- HTTP ---------------------------------------------------------------------------------------

class Api:
    def __init__(self, base: str, token: str, timeout: float = 30.0) -> None:
        self.http = httpx.Client(base_url=base, timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}",
                                          "content-type": "application/json"})

    def close(self) -> None:
        self.http.close()

    def _ok(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            raise RuntimeError(f"{r.request.method} {r.request.url.path} -> {r.status_code}: {r.text[:500]}")
        return orjson.loads(r.content) if r.content else None

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._ok(self.http.post("/ops/runs", content=orjson.dumps(body)))  # type: ignore[no-any-return]

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._ok(self.http.get(f"/ops/runs/{run_id}"))  # type: ignore[no-any-return]

    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        return self._ok(self.http.get(f"/ops/runs/{run_id}/events", params={"after": after}))["events"]  # type: ignore[no-any-return]

    def executors(self) -> list[dict[str, Any]]:
        return self._ok(self.http.get("/ops/executors"))["executors"]  # type: ignore[no-any-return]


def run_body(slug: str, phases: list[dict[str, Any]]) -> dict[str, Any]:
    return {"spec_slug": slug, "git_sha": "0" * 40, "phases": phases, "input_manifest": {}}


def wait_executors_idle(api: Api, ids: list[str], timeout: float = 180) -> None:
    """Until every executor id has registered (its first claim reached the server)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = {e.get("id") or e.get("executor_id") for e in api.executors()}
        if all(i in seen for i in ids):
            return
        time.sleep(0.05)
    raise RuntimeError(f"workers {ids} did not register in {timeout} s")


def ts(value: str) -> float:
    """An ISO timestamp from the API as epoch seconds."""
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
