"""Delivering the outbox: webhooks (JSON signed with HMAC-SHA256 and a timestamp), Slack-compatible
webhooks and email over SMTP with STARTTLS.

:func:`deliver_due` takes due notifications in one short transaction (a compare-and-swap on their
attempt count, ``SKIP LOCKED`` on PostgreSQL, so two servers never send the same attempt), sends
them outside any transaction, and records every attempt with its outcome. A failed attempt is
retried with exponential backoff up to ``LAKEHOUSE_ALERT_MAX_ATTEMPTS``; a sender that dies mid-way
leaves the notification ``sending`` until its hold passes, and the next pass takes it again
(at-least-once). Nothing here raises: a refusing server, a timeout, a 500, an egress refusal or a
secret that no longer decrypts is a recorded failed attempt.

Channels are connections (services/connections.py): ``webhook`` (config ``url``, ``format`` json or
slack; secrets ``signing_secret``, ``auth_header``) and ``smtp`` (``host``, ``port``, ``starttls``,
``user``, ``from_address``; secret ``password``). Secrets are resolved per attempt and redacted from
every recorded error.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import smtplib
import ssl
import time
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import orjson

from lakehouse.connectors.netpolicy import Target
from lakehouse.domain.alerts import NotificationStatus
from lakehouse.domain.principal import SYSTEM
from lakehouse.domain.retry import backoff_seconds
from lakehouse.services import connections
from lakehouse.services.context import Context
from lakehouse.services.errors import ServiceError
from lakehouse.store import alerts as store
from lakehouse.store.types_public import RowMapping

log = logging.getLogger("lakehouse.notify")

SIGNATURE_HEADER = "X-Lakehouse-Signature"
TIMESTAMP_HEADER = "X-Lakehouse-Timestamp"


@dataclass
class Delivery:
    sent: int = 0
    retried: int = 0
    failed: int = 0


class SendError(Exception):
    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, "<timestamp>." + body): what a receiver recomputes
    (and it refuses a timestamp too far from its clock, so a captured request cannot be replayed)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def text_of(payload: dict[str, Any]) -> str:
    """One line for chat and email subjects."""
    event = payload.get("event", "fired")
    tag = {"fired": "", "repeated": "still ", "escalated": "ESCALATED: ", "resolved": "RESOLVED: "}.get(event, "")
    return f"[{payload.get('severity', '?').upper()}] {tag}{payload.get('title', '')} ({payload.get('workspace')})"


def deliver_due(ctx: Context, limit: int = 50, max_batches: int = 20) -> Delivery:
    """Send what is due now, in batches of ``limit``: another batch follows while the last one was
    full (up to ``max_batches``, so one pass cannot hold the loop forever); returns the counts."""
    out = Delivery()
    for _ in range(max_batches):
        batch = _deliver_batch(ctx, limit)
        out.sent, out.retried, out.failed = (out.sent + batch.sent, out.retried + batch.retried,
                                             out.failed + batch.failed)
        if batch.sent + batch.retried + batch.failed < limit:
            break
    return out


def _deliver_batch(ctx: Context, limit: int) -> Delivery:
    now = ctx.clock()
    hold = timedelta(seconds=ctx.settings.alert_send_timeout_s * 3 + 30)
    taken: list[tuple[RowMapping, RowMapping | None]] = []
    with ctx.db.write() as conn:
        for n in store.due_notifications(conn, now, limit):
            if store.take(conn, n["id"], n["attempts"], now + hold):
                taken.append((n, store.connection_in(conn, n["workspace_id"], n["connection_id"])))
    out = Delivery()
    clients = _Clients(ctx.settings.alert_send_timeout_s)
    try:
        for n, channel in taken:
            _deliver_one(ctx, n, channel, clients, out)
    finally:
        clients.close()
    return out


class _Clients:
    """HTTP clients for a batch of sends, one per host name (building one loads the CA bundle, ~50 ms;
    one per name, because requests go to the checked address with the name only in Host and SNI: a
    kept-alive connection must never carry another name's request)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._http: dict[str, Any] = {}

    def http(self, host: str) -> Any:
        if host not in self._http:
            import httpx

            self._http[host] = httpx.Client(timeout=self.timeout_s, follow_redirects=False)
        return self._http[host]

    def close(self) -> None:
        for client in self._http.values():
            client.close()


def _deliver_one(ctx: Context, n: RowMapping, channel: RowMapping | None, clients: _Clients, out: Delivery) -> None:
    attempt = n["attempts"] + 1
    started = time.perf_counter()
    status_code: int | None = None
    try:
        if channel is None:
            raise SendError("the channel's connection was deleted")
        status_code = _send(ctx, n, channel, clients)
        ok, error = True, None
    except SendError as exc:
        ok, error, status_code = False, str(exc)[:2000], exc.status_code
    except Exception as exc:  # a channel must never stop the loop: record and carry on
        ok, error = False, f"{type(exc).__name__}: {exc}"[:2000]
    elapsed = round((time.perf_counter() - started) * 1000, 1)
    at = ctx.clock()
    if ok:
        status, nxt = NotificationStatus.SENT, None
        out.sent += 1
    elif attempt >= ctx.settings.alert_max_attempts or channel is None:
        status, nxt = NotificationStatus.FAILED, None
        out.failed += 1
        log.warning("notification failed for good", extra={"notification": n["id"], "error": error})
    else:
        delay = backoff_seconds(attempt, ctx.settings.alert_retry_base_s, ctx.settings.alert_retry_max_s)
        status, nxt = NotificationStatus.PENDING, at + timedelta(seconds=delay)
        out.retried += 1
    with ctx.db.write() as conn:
        store.finish_attempt(conn, n["id"], attempt, at=at, ok=ok, status_code=status_code, error=error,
                             duration_ms=elapsed, next_attempt_at=nxt, final_status=status.value)


def _send(ctx: Context, n: RowMapping, channel: RowMapping, clients: _Clients) -> int | None:
    try:
        config, secrets = connections.resolve(ctx, SYSTEM, int(channel["id"]))
        where = connections.check_target(ctx, channel["type"], config)
    except ServiceError as exc:  # egress refused, secrets that no longer decrypt, connection gone
        raise SendError(f"{exc.code}: {exc.message}") from None
    try:
        if channel["type"] == "webhook":
            return _webhook(ctx, dict(n["payload"]), config, secrets, where, clients)
        if channel["type"] == "smtp":
            _email(ctx, dict(n["payload"]), n["recipients"] or "", config, secrets, where)
            return None
    except SendError as exc:
        raise SendError(connections.redact(str(exc), secrets), exc.status_code) from None
    except Exception as exc:
        raise SendError(connections.redact(f"{type(exc).__name__}: {exc}", secrets)) from None
    raise SendError(f"{channel['type']} connections cannot carry notifications")


def _webhook(ctx: Context, payload: dict[str, Any], config: dict[str, Any], secrets: dict[str, str],
             where: Any, clients: _Clients) -> int:
    import httpx

    if config.get("format") == "slack":
        body = orjson.dumps({"text": text_of(payload)})
    else:
        body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    timestamp = str(int(ctx.clock().timestamp()))
    headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
               "User-Agent": "lakehouse-control-room"}
    if secrets.get("signing_secret"):
        headers[SIGNATURE_HEADER] = sign(secrets["signing_secret"], timestamp, body)
    if secrets.get("auth_header"):
        headers["Authorization"] = secrets["auth_header"]
    if not isinstance(where, Target):
        raise SendError("the webhook has no checked network target")
    url = httpx.URL(str(config["url"]))
    headers["Host"] = url.netloc.decode()
    client = clients.http(url.host)
    request = client.build_request("POST", url.copy_with(host=where.address), headers=headers, content=body,
                                   extensions={"sni_hostname": url.host})
    response = client.send(request)
    if response.status_code >= 300:
        raise SendError(f"the webhook answered HTTP {response.status_code}", response.status_code)
    return int(response.status_code)


def _email(ctx: Context, payload: dict[str, Any], recipients: str, config: dict[str, Any], secrets: dict[str, str],
           where: Any) -> None:
    if not isinstance(where, Target):
        raise SendError("the SMTP server has no checked network target")
    to = [a.strip() for a in recipients.split(",") if a.strip()]
    if not to:
        raise SendError("the route names no recipients")
    msg = EmailMessage()
    msg["From"] = config["from_address"]
    msg["To"] = ", ".join(to)
    msg["Subject"] = text_of(payload)[:250]
    msg["X-Lakehouse-Alert"] = str(payload.get("alert_id"))
    lines = [text_of(payload), "", f"rule: {payload.get('rule')} ({payload.get('kind')})",
             f"group: {payload.get('group')}", f"occurrences: {payload.get('occurrences')}",
             f"first: {payload.get('first_at')}", f"last: {payload.get('last_at')}"]
    if payload.get("run_id"):
        lines.append(f"run: {payload['run_id']}")
    lines += ["", orjson.dumps(payload.get("details") or {}, option=orjson.OPT_INDENT_2).decode()]
    msg.set_content("\n".join(lines))
    smtp = smtplib.SMTP(timeout=ctx.settings.alert_send_timeout_s)
    smtp._host = config["host"]  # type: ignore[attr-defined]  # STARTTLS checks this name; the socket goes to the address
    try:
        smtp.connect(where.address, int(config["port"]))
        smtp.ehlo()
        if str(config.get("starttls", "yes")).lower() in ("yes", "true", "1"):
            tls = ssl.create_default_context()
            if ctx.settings.alert_smtp_ca_file:
                tls.load_verify_locations(cafile=str(ctx.settings.alert_smtp_ca_file))
            smtp.starttls(context=tls)
            smtp.ehlo()
        if config.get("user") and secrets.get("password"):
            smtp.login(config["user"], secrets["password"])
        refused = smtp.send_message(msg)
        if refused:
            raise SendError(f"the SMTP server refused {', '.join(sorted(refused))}")
    except smtplib.SMTPResponseException as exc:
        raise SendError(f"the SMTP server answered {exc.smtp_code}: {exc.smtp_error!r}", exc.smtp_code) from None
    finally:
        try:
            smtp.quit()
        except Exception:
            smtp.close()
