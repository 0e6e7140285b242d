"""Log lines: JSON for machines (secrets redacted, no terminal colour codes), readable text for people."""

from __future__ import annotations

import json
import logging

from lakehouse.cli.common import JsonFormatter, TextFormatter


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("lakehouse.test", logging.INFO, __file__, 1, message, (), None)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_json_lines_redact_secrets_and_strip_colour_codes() -> None:
    line = JsonFormatter().format(_record("\x1b[1mstarted\x1b[0m", api_token="lh_secret", note="\x1b[31mred\x1b[0m"))
    doc = json.loads(line)
    assert doc["message"] == "started" and doc["note"] == "red"
    assert doc["api_token"] == "•••••" and "lh_secret" not in line and "\x1b" not in line


def test_text_lines_are_one_readable_line_without_secrets() -> None:
    line = TextFormatter().format(_record("worker started", executor_id="w1", password="hunter2"))
    assert "INFO" in line and "lakehouse.test: worker started" in line and "executor_id=w1" in line
    assert "hunter2" not in line and "\n" not in line
