"""Issue 11, the CLI's papercuts: the installed command in hints, grammar, short run ids."""

from __future__ import annotations

from pathlib import Path

from lakehouse.cli.demo import GOLD_PREVIEW, installed_command


def test_hints_use_the_command_as_installed(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    exe = venv_bin / "lakehouse"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert installed_command(str(exe), cwd=tmp_path) == ".venv/bin/lakehouse"  # not activated
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")
    assert installed_command(str(exe), cwd=tmp_path) == "lakehouse"  # an activated venv


def test_demo_prints_gold_tables_as_they_are() -> None:
    assert all(t.startswith("gold.") for t in GOLD_PREVIEW)  # SELECT * of each: the real column names
