"""Alert rules, the routing matrix and delivery, against a real HTTP receiver and a real SMTP server
(STARTTLS), on SQLite and PostgreSQL, with a fake clock."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from lakehouse.domain.principal import SYSTEM
from lakehouse.services import alert_eval, alerts, connections, notify, protocol
from lakehouse.services.context import Context
from lakehouse.services.errors import Conflict, InvalidInput
from lakehouse.store.tables import audit_log
from tests.clock_support import Clock
from tests.operations.conftest import (
    EXECUTOR,
    Mailbox,
    Receiver,
    dq_event,
    fail_run,
    start_run,
    succeed_run,
)

SECRET = "whsec-test-0123456789"


def webhook(ctx: Context, receiver: Receiver, name: str = "hook", fmt: str = "json") -> None:
    connections.create(ctx, SYSTEM, workspace="default", environment="dev", name=name, type_="webhook",
                       config={"url": receiver.url, "format": fmt}, secrets={"signing_secret": SECRET})


def mail(ctx: Context, box: Mailbox, name: str = "mail") -> None:
    connections.create(ctx, SYSTEM, workspace="default", environment="dev", name=name, type_="smtp",
                       config={"host": "127.0.0.1", "port": str(box.port), "starttls": "yes",
                               "from_address": "lakehouse@example.com"}, secrets={})


def rule(ctx: Context, kind: str, name: str | None = None, **values: Any) -> dict[str, Any]:
    return alerts.create_rule(ctx, SYSTEM, "default", {"name": name or kind.replace("_", "-"), "kind": kind,
                                                       **values})


def deliver(ctx: Context) -> notify.Delivery:
    return notify.deliver_due(ctx)


def test_failing_run_sends_one_email_and_one_signed_webhook(ctx: Context, clock: Clock, receiver: Receiver,
                                                            smtp_server: Mailbox) -> None:
    receiver.start()
    webhook(ctx, receiver)
    mail(ctx, smtp_server)
    rule(ctx, "run_failed", severity="critical")
    alerts.add_route(ctx, SYSTEM, "default", severity_="critical", channel="hook")
    alerts.add_route(ctx, SYSTEM, "default", severity_="critical", channel="mail", recipients="oncall@example.com")
    run_id = fail_run(ctx, clock)
    d = deliver(ctx)
    assert (d.sent, d.failed, d.retried) == (2, 0, 0)
    assert deliver(ctx).sent == 0  # nothing is sent twice
    [req] = receiver.requests
    ts = req["headers"]["X-Lakehouse-Timestamp"]
    expected = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + req["body"], hashlib.sha256).hexdigest()
    assert req["headers"]["X-Lakehouse-Signature"] == expected
    assert int(ts) == int(clock.now.timestamp())
    body = req["json"]
    assert body["event"] == "fired" and body["kind"] == "run_failed" and body["run_id"] == run_id
    assert body["severity"] == "critical" and body["group"] == "dev/sales"
    [msg] = smtp_server.messages
    assert msg.rcpt_tos == ["oncall@example.com"] and b"run of dev/sales failed" in msg.content
    [alert] = alerts.list_alerts(ctx, SYSTEM)
    detail = alerts.get_alert(ctx, SYSTEM, alert["id"])
    assert [n["status"] for n in detail["notifications"]] == ["sent", "sent"]
    assert all(len(n["attempts"]) == 1 and n["attempts"][0]["ok"] for n in detail["notifications"])


def test_slack_format_posts_text(ctx: Context, clock: Clock, receiver: Receiver) -> None:
    receiver.start()
    webhook(ctx, receiver, "slack", fmt="slack")
    rule(ctx, "run_failed")
    alerts.add_route(ctx, SYSTEM, "default", severity_="error", channel="slack")
    fail_run(ctx, clock)
    deliver(ctx)
    [req] = receiver.requests
    assert set(req["json"]) == {"text"} and "[ERROR] run of dev/sales failed" in req["json"]["text"]


def test_receiver_down_then_500_is_retried_then_delivered(ctx: Context, clock: Clock, receiver: Receiver) -> None:
    webhook(ctx, receiver)
    rule(ctx, "run_failed")
    alerts.add_route(ctx, SYSTEM, "default", severity_="error", channel="hook")
    fail_run(ctx, clock)
    d = deliver(ctx)  # nobody listens
    assert (d.sent, d.retried) == (0, 1)
    assert deliver(ctx).sent == 0  # not due before its backoff
    receiver.fail_next = 1
    receiver.start()
    clock.advance(ctx.settings.alert_retry_max_s)
    assert deliver(ctx).retried == 1  # HTTP 500
    clock.advance(ctx.settings.alert_retry_max_s)
    assert deliver(ctx).sent == 1
    assert len(receiver.requests) == 1
    [alert] = alerts.list_alerts(ctx, SYSTEM)
    [note] = alerts.get_alert(ctx, SYSTEM, alert["id"])["notifications"]
    tries = note["attempts"]
    assert [t["ok"] for t in tries] == [False, False, True] and note["status"] == "sent"
    assert "ConnectError" in (tries[0]["error"] or "") and tries[1]["status_code"] == 500


def test_every_attempt_failing_ends_failed_and_the_loop_goes_on(ctx: Context, clock: Clock,
                                                                smtp_server: Mailbox) -> None:
    ctx.settings.alert_max_attempts = 2
    mail(ctx, smtp_server)
    rule(ctx, "run_failed")
    alerts.add_route(ctx, SYSTEM, "default", severity_="error", channel="mail", recipients="a@example.com")
    smtp_server.refuse = True
    fail_run(ctx, clock)
    assert deliver(ctx).retried == 1
    clock.advance(ctx.settings.alert_retry_max_s)
    assert deliver(ctx).failed == 1
    [alert] = alerts.list_alerts(ctx, SYSTEM)
    [note] = alerts.get_alert(ctx, SYSTEM, alert["id"])["notifications"]
    assert note["status"] == "failed" and "554" in (note["last_error"] or "")


def test_deleted_channel_is_a_recorded_failure(ctx: Context, clock: Clock, receiver: Receiver) -> None:
    webhook(ctx, receiver)
    rule(ctx, "run_failed")
    alerts.add_route(ctx, SYSTEM, "default", severity_="error", channel="hook")
    fail_run(ctx, clock)
    [c] = connections.list_connections(ctx, SYSTEM)
    # the route goes with its connection, the queued notification stays and fails with the reason
    connections.delete_connection(ctx, SYSTEM, c["id"])
    assert deliver(ctx).failed == 1
    [alert] = alerts.list_alerts(ctx, SYSTEM)
    [note] = alerts.get_alert(ctx, SYSTEM, alert["id"])["notifications"]
    assert note["status"] == "failed" and "deleted" in (note["last_error"] or "")


def test_dedupe_within_the_window_and_repeat_after_it(ctx: Context, clock: Clock, receiver: Receiver) -> None:
    receiver.start()
    webhook(ctx, receiver)
    rule(ctx, "run_failed", window_s=600)
    alerts.add_route(ctx, SYSTEM, "default", severity_="error", channel="hook")
    fail_run(ctx, clock)
    fail_run(ctx, clock)
    fail_run(ctx, clock, spec="other")  # another pipeline: another alert
    deliver(ctx)
    assert sorted(r["json"]["group"] for r in receiver.requests) == ["dev/other", "dev/sales"]
    sales = next(a for a in alerts.list_alerts(ctx, SYSTEM) if a["group"] == "dev/sales")
    assert sales["occurrences"] == 2
    clock.advance(601)
    fail_run(ctx, clock)
    deliver(ctx)
    assert [r["json"]["event"] for r in receiver.requests][-1] == "repeated"
    assert receiver.requests[-1]["json"]["occurrences"] == 3
    assert len(alerts.list_alerts(ctx, SYSTEM)) == 2


def test_escalation_after_n_minutes_unacknowledged(ctx: Context, clock: Clock, receiver: Receiver,
                                                   smtp_server: Mailbox) -> None:
    receiver.start()
    webhook(ctx, receiver)
    mail(ctx, smtp_server)
    rule(ctx, "run_failed", severity="critical")
    alerts.add_route(ctx, SYSTEM, "default", severity_="critical", channel="hook", escalate_after_s=300)
    alerts.add_route(ctx, SYSTEM, "default", severity_="critical", channel="mail", level=1,
                     recipients="lead@example.com")
    fail_run(ctx, clock)
    fail_run(ctx, clock, spec="other")
    deliver(ctx)
    assert len(receiver.requests) == 2 and smtp_server.messages == []
    clock.advance(297)  # the first alert fired 2 s ago (the fake clock moves 1 s per failed attempt)
    assert alert_eval.escalate(ctx) == 0
    other = next(a for a in alerts.list_alerts(ctx, SYSTEM) if a["group"] == "dev/other")
    alerts.acknowledge(ctx, SYSTEM, other["id"])  # someone is on this one: it does not escalate
    clock.advance(3)
    assert alert_eval.escalate(ctx) == 1
    deliver(ctx)
    [msg] = smtp_server.messages
    assert msg.rcpt_tos == ["lead@example.com"] and b"ESCALATED" in msg.content and b"dev/sales" in msg.content
    clock.advance(3600)
    assert alert_eval.escalate(ctx) == 0  # no level 2


def test_success_resolves_and_tells_the_channels(ctx: Context, clock: Clock, receiver: Receiver) -> None:
    receiver.start()
    webhook(ctx, receiver)
    rule(ctx, "run_failed")
    alerts.add_route(ctx, SYSTEM, "default", severity_="error", channel="hook")
    fail_run(ctx, clock)
    succeed_run(ctx, clock)
    deliver(ctx)
    assert [r["json"]["event"] for r in receiver.requests] == ["fired", "resolved"]
    [alert] = alerts.list_alerts(ctx, SYSTEM, "all")
    assert alert["status"] == "resolved" and alert["resolved_by"] == "auto"


def test_ack_and_resolve_are_audited(ctx: Context, clock: Clock) -> None:
    rule(ctx, "run_failed")
    fail_run(ctx, clock)
    [alert] = alerts.list_alerts(ctx, SYSTEM)
    assert alerts.acknowledge(ctx, SYSTEM, alert["id"])["status"] == "acknowledged"
    with pytest.raises(Conflict):
        alerts.acknowledge(ctx, SYSTEM, alert["id"])
    assert alerts.resolve(ctx, SYSTEM, alert["id"])["resolved_by"] == "system"
    with pytest.raises(Conflict):
        alerts.resolve(ctx, SYSTEM, alert["id"])
    with ctx.db.read() as conn:
        actions = [r.action for r in conn.execute(audit_log.select().order_by(audit_log.c.id))]
    assert "alert.acknowledge" in actions and "alert.resolve" in actions and "alert.rule.create" in actions
    fail_run(ctx, clock)  # a new failure after a resolve opens a new alert
    assert len(alerts.list_alerts(ctx, SYSTEM)) == 1 and len(alerts.list_alerts(ctx, SYSTEM, "all")) == 2


def test_retries_exhausted_and_scope(ctx: Context, clock: Clock) -> None:
    rule(ctx, "retries_exhausted", environment="prod")
    fail_run(ctx, clock, attempts=2)  # dev: out of scope
    assert alerts.list_alerts(ctx, SYSTEM) == []
    fail_run(ctx, clock, env="prod", attempts=1)  # no retry configured: not "retries exhausted"
    assert alerts.list_alerts(ctx, SYSTEM) == []
    fail_run(ctx, clock, env="prod", attempts=2)
    [alert] = alerts.list_alerts(ctx, SYSTEM)
    assert alert["group"] == "prod/sales/p0" and alert["details"]["attempts"] == 2


def test_duration_over_baseline(ctx: Context, clock: Clock) -> None:
    rule(ctx, "duration_over_baseline", params={"k": 2, "min_history": 3})
    for _ in range(3):
        succeed_run(ctx, clock, took_s=10)
    assert alerts.list_alerts(ctx, SYSTEM) == []
    succeed_run(ctx, clock, took_s=25)
    [alert] = alerts.list_alerts(ctx, SYSTEM)
    assert alert["details"]["baseline_s"] == 10 and alert["details"]["duration_s"] == 25
    succeed_run(ctx, clock, took_s=11)
    assert alerts.list_alerts(ctx, SYSTEM) == []


def test_dq_failure_fires_and_warnings_only_when_asked(ctx: Context, clock: Clock) -> None:
    rule(ctx, "dq_failed")
    succeed_run(ctx, clock, events=[dq_event(False, "warn")])
    assert alerts.list_alerts(ctx, SYSTEM) == []
    succeed_run(ctx, clock, events=[dq_event(False, "error")])
    [alert] = alerts.list_alerts(ctx, SYSTEM)
    assert alert["details"]["failed"][0]["table"] == "silver.orders"
    succeed_run(ctx, clock, events=[dq_event(True)])
    assert alerts.list_alerts(ctx, SYSTEM) == []


def test_timed_rules_fire_and_clear(ctx: Context, clock: Clock) -> None:
    rule(ctx, "queue_depth", params={"threshold": 3})
    rule(ctx, "oldest_queued", params={"threshold_s": 60})
    rule(ctx, "executor_silent", params={"silent_s": 120})
    runs_ = [start_run(ctx) for _ in range(3)]
    [c] = protocol.claim(ctx, EXECUTOR, "w-silent", ["noop"], run_id=runs_[0])  # the executor is seen
    protocol.release(ctx, EXECUTOR, runs_[0], c["lease_token"])
    assert alert_eval.evaluate(ctx) == 0  # 3 queued, 0 s old, executor just seen
    runs_.append(start_run(ctx))
    clock.advance(121)
    alert_eval.evaluate(ctx)
    kinds = {a["kind"]: a for a in alerts.list_alerts(ctx, SYSTEM)}
    assert set(kinds) == {"queue_depth", "oldest_queued", "executor_silent"}
    assert kinds["queue_depth"]["details"]["depth"] == 4 and kinds["executor_silent"]["group"] == "w-silent"
    for run_id in runs_:  # the queue drains, the executor is seen again
        [c] = protocol.claim(ctx, EXECUTOR, "w-silent", ["noop"], run_id=run_id)
        protocol.complete(ctx, EXECUTOR, run_id, c["lease_token"], {})
    alert_eval.evaluate(ctx)
    assert alerts.list_alerts(ctx, SYSTEM) == []
    assert {a["resolved_by"] for a in alerts.list_alerts(ctx, SYSTEM, "resolved")} == {"auto"}


def test_bad_rules_and_routes_are_clear_errors(ctx: Context, clock: Clock, receiver: Receiver) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "nope"}, "invalid_rule"),
        ({"kind": "run_failed", "params": {"k": 2}}, "invalid_rule"),
        ({"kind": "duration_over_baseline", "params": {"k": "x"}}, "invalid_rule"),
        ({"kind": "duration_over_baseline", "params": {"k": 0.5}}, "invalid_rule"),
        ({"kind": "run_failed", "severity": "urgent"}, "invalid_rule"),
        ({"kind": "run_failed", "job": "no_such_job"}, "unknown_job"),
        ({"kind": "queue_depth", "pipeline": "sales"}, "invalid_scope"),
        ({"kind": "run_failed", "environment": "qa"}, "invalid_environment"),
        ({"kind": "run_failed", "window_s": -1}, "invalid_window"),
    ]
    for values, code in cases:
        with pytest.raises(InvalidInput) as exc:
            alerts.create_rule(ctx, SYSTEM, "default", {"name": "r", **values})
        assert exc.value.code == code, values
    with pytest.raises(InvalidInput, match="no connection named"):
        alerts.add_route(ctx, SYSTEM, "default", severity_="error", channel="ghost")
    connections.create(ctx, SYSTEM, workspace="default", environment="dev", name="src", type_="sqlite",
                       config={"path": str(ctx.settings.home / "sources" / "x.db")}, secrets={})
    with pytest.raises(InvalidInput, match="channels are webhook or smtp"):
        alerts.add_route(ctx, SYSTEM, "default", severity_="error", channel="src")
    webhook(ctx, receiver)
    with pytest.raises(InvalidInput, match="email channels only"):
        alerts.add_route(ctx, SYSTEM, "default", severity_="error", channel="hook", recipients="a@b.c")
    with pytest.raises(InvalidInput):
        alerts.add_route(ctx, SYSTEM, "default", severity_="bad", channel="hook")


def test_operations_pass_runs_every_step(ctx: Context, clock: Clock, receiver: Receiver) -> None:
    receiver.start()
    webhook(ctx, receiver)
    rule(ctx, "run_failed")
    alerts.add_route(ctx, SYSTEM, "default", severity_="error", channel="hook")
    fail_run(ctx, clock)
    result = alert_eval.run_pass(ctx, force=True)
    assert result is not None and result.errors == []
    assert result.delivery.sent == 1 and result.scored == 1
    assert alert_eval.run_pass(ctx) is None  # within LAKEHOUSE_ALERT_INTERVAL_S


def test_an_executor_that_stopped_cleanly_is_not_silent(ctx: Context, clock: Clock) -> None:
    """Issue 11 §5: a goodbye (``POST /ops/executors/{id}/stopped``) means stopped, not silent; the
    one that vanished without a word still fires."""
    from lakehouse.services import executors

    rule(ctx, "executor_silent", params={"silent_s": 120})
    for ex in ("w-polite", "w-vanished"):
        protocol.claim(ctx, EXECUTOR, ex, ["noop"])
    executors.mark_stopped(ctx, EXECUTOR, "w-polite", "stopped by SIGTERM")
    clock.advance(121)
    alert_eval.evaluate(ctx)
    assert [a["group"] for a in alerts.list_alerts(ctx, SYSTEM)] == ["w-vanished"]
