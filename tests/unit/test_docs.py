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


ROOT = Path(__file__).parents[2]
_MD_REF = __import__("re").compile(r"(?<![\w/.:-])([A-Za-z0-9_][A-Za-z0-9_./-]*\.md)\b")
_SCANNED = ("README.md", "docs", "src", "bench", "contracts", "pipelines", "Makefile", "pyproject.toml")


def _scanned_files() -> list[Path]:
    out: list[Path] = []
    for name in _SCANNED:
        path = ROOT / name
        if path.is_file():
            out.append(path)
        elif path.is_dir():
            out += [p for p in path.rglob("*") if p.is_file() and "vendor" not in p.parts
                    and p.suffix in {".md", ".py", ".yaml", ".yml", ".toml", ".html", ".sql"}]
    return out


def test_every_markdown_reference_exists() -> None:
    """A `*.md` named in the product's sources, docs or contract must be a file of the repository
    (relative to the naming file, the repository root or docs/): no reference to documents we do
    not ship."""
    missing = []
    for path in _scanned_files():
        for ref in _MD_REF.findall(path.read_text(errors="replace")):
            candidates = [path.parent / ref, ROOT / ref, ROOT / "docs" / ref]
            if not any(c.is_file() for c in candidates):
                missing.append(f"{path.relative_to(ROOT)}: {ref}")
    assert missing == [], "references to markdown files that do not exist:\n" + "\n".join(missing)
