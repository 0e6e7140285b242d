"""One state vocabulary: statuses come from the domain's enums, and one status -> icon/colour/word
table serves the Control Room and the terminal."""

from __future__ import annotations

import ast
from pathlib import Path

from lakehouse.cli.render import alert_text, status_text
from lakehouse.domain.alerts import AlertStatus, NotificationStatus, Severity
from lakehouse.domain.states import AttemptStatus, PhaseStatus, PhaseView, RunStatus, shown_phase_status
from lakehouse.domain.status_look import ALERT_LOOKS, DOMAIN_STATUSES, STATUS_LOOKS, alert_look, look
from lakehouse.web.render import status_badge

SRC = Path(__file__).parents[2] / "src" / "lakehouse"


def test_every_domain_status_has_one_look() -> None:
    assert STATUS_LOOKS.keys() >= DOMAIN_STATUSES
    assert {*RunStatus, *PhaseStatus, *AttemptStatus, *PhaseView} <= STATUS_LOOKS.keys()


def test_web_and_terminal_show_the_same_icon_and_word() -> None:
    for status, lk in STATUS_LOOKS.items():
        badge = str(status_badge(status))
        assert f'class="status s-{status}"' in badge and lk.icon in badge and lk.word in badge
        assert status_text(status) == f"[{lk.colour}]{lk.icon} {lk.word}[/]"
    assert look("no-such-status").word == "no-such-status" and "no-such-status" in status_text("no-such-status")
    assert look(None) == look(PhaseStatus.PENDING)


def test_every_alert_severity_and_state_has_one_look_on_the_page_and_in_the_terminal() -> None:
    from lakehouse.web.pages_alerts import badge

    keys = {f"sev-{s.value}" for s in Severity} | {f"al-{s.value}" for s in AlertStatus} \
        | {f"nt-{s.value}" for s in NotificationStatus}
    assert ALERT_LOOKS.keys() == keys
    for key, lk in ALERT_LOOKS.items():
        kind, value = key.split("-", 1)
        shown = str(badge(kind, value))
        assert f'class="status {key}"' in shown and lk.icon in shown and lk.word in shown
        assert alert_text(kind, value) == f"[{lk.colour}]{lk.icon} {lk.word}[/]"
    assert alert_look("sev", "nosuch") is None and alert_text("sev", "nosuch") == "nosuch"
    assert "nosuch" in str(badge("sev", "nosuch"))


def test_retrying_is_derived_never_stored() -> None:
    assert shown_phase_status("queued", 0) == "queued"
    assert shown_phase_status("queued", 1) == PhaseView.RETRYING.value
    assert PhaseView.RETRYING.value == "retrying"
    assert shown_phase_status("running", 2) == "running"
    assert "retrying" not in {s.value for s in PhaseStatus}


STATUS_WORDS = {s.value for s in (*AttemptStatus, *PhaseView)} - {s.value for s in (*PhaseStatus, *RunStatus)}


def test_no_attempt_status_or_retrying_literal_outside_domain() -> None:
    """``expired``, ``timed_out`` and ``retrying`` are spelled only in domain/ (as enum values); web, CLI,
    services and store use the enums."""
    found = []
    for path in SRC.rglob("*.py"):
        if path.parent.name == "domain":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STATUS_WORDS:
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}")
    assert not found, "use lakehouse.domain.states instead of string literals:\n" + "\n".join(found)


def test_no_second_status_table_in_web_or_cli() -> None:
    for rel in ("web/render.py", "cli/render.py"):
        text = (SRC / rel).read_text()
        assert '"succeeded": (' not in text and "'succeeded': (" not in text, rel
