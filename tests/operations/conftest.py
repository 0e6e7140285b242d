"""Fixtures of the operations tests: a fake clock, the queue wired to the alert hooks (until
services/protocol.py calls them itself), runs driven to failure or success, and real local receivers:
an HTTP server and an SMTP server with STARTTLS (aiosmtpd), both on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lakehouse.domain.principal import SYSTEM, Principal
from lakehouse.domain.runs import PhaseSpec, RunRequest
from lakehouse.services import alert_fire, freshness, protocol, runs
from lakehouse.services.context import Context
from lakehouse.store import queue
from tests.clock_support import Clock

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

EXECUTOR = Principal(name="robot", role="executor")


@pytest.fixture
def clock(ctx: Context) -> Clock:
    c = Clock(START)
    ctx.clock = c
    return c


@pytest.fixture(autouse=True)
def wired(monkeypatch: pytest.MonkeyPatch) -> None:
    """Call the hooks where services/protocol.py will (the lines in docs/operations.md), unless it does."""
    source = inspect.getsource(protocol)
    if "alert_fire.on_events" not in source:
        fail_phase, complete_one = protocol._fail_phase, protocol._complete_one

        def _fail_phase(ctx: Context, conn: Any, phase: Any, now: datetime, *a: Any, **k: Any) -> Any:
            out = fail_phase(ctx, conn, phase, now, *a, **k)
            alert_fire.on_events(conn, phase["run_id"], out, now)
            return out

        def _complete_one(conn: Any, phase: Any, now: datetime, *a: Any, **k: Any) -> Any:
            result, nxt = complete_one(conn, phase, now, *a, **k)
            if nxt is None:
                alert_fire.on_events(conn, phase["run_id"], [{"type": "RUN_SUCCEEDED"}], now)
            return result, nxt

        monkeypatch.setattr(protocol, "_fail_phase", _fail_phase)
        monkeypatch.setattr(protocol, "_complete_one", _complete_one)
    if "alert_fire.on_runs_finished" not in source:
        complete_set = queue.complete_set

        def _complete_set(conn: Any, items: Any, events: Any, *, now: datetime, **k: Any) -> Any:
            done, claims = complete_set(conn, items, events, now=now, **k)
            alert_fire.on_runs_finished(conn, [d["run_id"] for d in done.values()
                                               if d["run_status"] == "succeeded"], now)
            return done, claims

        monkeypatch.setattr(queue, "complete_set", _complete_set)
    if "freshness.on_manifest" not in source:
        record = protocol._record_manifest

        def _record_manifest(conn: Any, run: Any, phase: str, manifest: dict[str, Any], now: datetime) -> None:
            record(conn, run, phase, manifest, now)
            freshness.on_manifest(conn, run, manifest, now)

        monkeypatch.setattr(protocol, "_record_manifest", _record_manifest)


def start_run(ctx: Context, spec: str = "sales", env: str = "dev", max_attempts: int = 1, workspace: str = "default",
              phases: int = 1) -> str:
    req = RunRequest(spec_slug=spec, git_sha="abc1234", environment=env, workspace=workspace,
                     phases=[PhaseSpec(name=f"p{i}", type="noop", max_attempts=max_attempts) for i in range(phases)])
    run, _ = runs.create_run(ctx, req, SYSTEM)
    return str(run["run_id"])


def fail_run(ctx: Context, clock: Clock, spec: str = "sales", env: str = "dev", attempts: int = 1,
             events: list[dict[str, Any]] | None = None, workspace: str = "default") -> str:
    run_id = start_run(ctx, spec, env, attempts, workspace)
    for i in range(attempts):
        [c] = protocol.claim(ctx, EXECUTOR, "w1", ["noop"], run_id=run_id)
        protocol.fail(ctx, EXECUTOR, run_id, c["lease_token"], "boom", retryable=True,
                      events=events if i == attempts - 1 else None)
        clock.advance(1)
    return run_id


def succeed_run(ctx: Context, clock: Clock, spec: str = "sales", env: str = "dev", took_s: float = 10.0,
                manifest: dict[str, Any] | None = None, events: list[dict[str, Any]] | None = None,
                phases: int = 1, workspace: str = "default", extra_attempts: int = 0) -> str:
    run_id = start_run(ctx, spec, env, 1 + extra_attempts, workspace, phases)
    for i in range(phases):
        if i == 0:
            for _ in range(extra_attempts):
                [c] = protocol.claim(ctx, EXECUTOR, "w1", ["noop"], run_id=run_id)
                protocol.fail(ctx, EXECUTOR, run_id, c["lease_token"], "flaky", retryable=True)
                clock.advance(1)
        [c] = protocol.claim(ctx, EXECUTOR, "w1", ["noop"], run_id=run_id)
        clock.advance(took_s / phases)
        last = i == phases - 1
        protocol.complete(ctx, EXECUTOR, run_id, c["lease_token"], (manifest or {}) if last else {},
                          events=events if last else None)
    return run_id


def dq_event(passed: bool, severity: str = "error", table: str = "silver.orders") -> dict[str, Any]:
    return {"event_id": f"dq-{passed}-{severity}-{table}-{datetime.now().timestamp()}", "type": "DQ_RESULT",
            "ts": datetime.now(UTC), "level": "info", "message": "dq",
            "payload": {"result": {"type": "not_null", "table": table, "severity": severity, "passed": passed,
                                   "message": "nulls found" if not passed else "ok"}}}


# --- a real HTTP receiver -------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Receiver:
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0  # answer this many requests with HTTP 500
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if rec.fail_next > 0:
                    rec.fail_next -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                rec.requests.append({"headers": dict(self.headers), "body": body, "json": json.loads(body)})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver that is NOT listening yet: call ``start()`` (a test may first show it down)."""
    r = Receiver(free_port())
    yield r
    r.stop()


# --- a real SMTP server with STARTTLS -------------------------------------------------------------

def _self_signed(tmp: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "smtp.crt", tmp / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Mailbox:
    port: int
    ca_file: Path
    messages: list[Any] = field(default_factory=list)
    refuse: bool = False


@pytest.fixture
def smtp_server(tmp_path: Path, ctx: Context) -> Iterator[Mailbox]:
    """aiosmtpd on 127.0.0.1 that requires STARTTLS; the context trusts its self-signed certificate."""
    from aiosmtpd.controller import Controller

    cert, key = _self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(str(cert), str(key))
    box = Mailbox(free_port(), cert)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if box.refuse:
                return "554 refused by policy"
            box.messages.append(envelope)
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port, tls_context=tls, require_starttls=True)
    controller.start()
    ctx.settings.alert_smtp_ca_file = cert
    yield box
    controller.stop()
