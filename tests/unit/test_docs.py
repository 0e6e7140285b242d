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


def test_every_pipeline_spec_field_is_documented() -> None:
    """docs/pipelines.md has a section per spec model with one row per field."""
    import re

    from pydantic import BaseModel

    from lakehouse.domain import pipelines as models

    text = (DOCS / "pipelines.md").read_text()
    sections = {m.group(1): m.start() for m in re.finditer(r"^#+ (\w+)$", text, re.MULTILINE)}
    classes = [c for c in vars(models).values()
               if isinstance(c, type) and issubclass(c, models.Spec) and c not in (models.Spec, models.CheckBase)
               and issubclass(c, BaseModel)]
    assert len(classes) >= 10
    for cls in classes:
        assert cls.__name__ in sections, f"docs/pipelines.md has no section for {cls.__name__}"
        start = sections[cls.__name__]
        end = min([p for p in sections.values() if p > start], default=len(text))
        body = text[start:end]
        for field in cls.model_fields:
            assert f"| `{field}` |" in body, f"{cls.__name__}.{field} missing from docs/pipelines.md"
