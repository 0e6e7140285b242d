"""Everything public is documented: settings, CLI commands, event types, handlers."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import typer.main

from lakehouse.cli.main import app
from lakehouse.domain.events import EXECUTOR_EVENT_TYPES, EventType
from lakehouse.settings import Settings

DOCS = Path(__file__).parents[2] / "docs"


def _commands(group: Any, prefix: str) -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            out += _commands(cmd, f"{prefix} {name}")
        else:
            out.append(f"{prefix} {name}")
    return out


def test_every_setting_is_documented() -> None:
    text = (DOCS / "settings.md").read_text()
    for field in Settings.model_fields:
        assert f"`LAKEHOUSE_{field.upper()}`" in text, f"LAKEHOUSE_{field.upper()} missing from docs/settings.md"


def test_every_cli_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    group = typer.main.get_command(app)
    commands = _commands(group, "lakehouse")
    assert len(commands) > 10
    for command in commands:
        assert f"`{command}" in text, f"{command} missing from docs/cli.md"


def test_every_event_type_is_documented() -> None:
    text = (DOCS / "events.md").read_text()
    for t in [*EventType, *EXECUTOR_EVENT_TYPES]:
        assert f"`{t}`" in text, f"{t} missing from docs/events.md"


def test_every_handler_is_documented() -> None:
    text = (DOCS / "handlers.md").read_text()
    names = [ep.name for ep in entry_points(group="lakehouse.handlers")]
    assert {"noop", "sleep", "python", "sql"} <= set(names)
    for name in names:
        assert f"| `{name}` |" in text, f"handler {name} missing from docs/handlers.md"
