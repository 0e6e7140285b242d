"""The `lakehouse` executable as a user types it, with its own config folder (``XDG_CONFIG_HOME``) and an
empty ``LAKEHOUSE_HOME``: a query that answers proves it went through the server (locally there is no
metadata database)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LAKEHOUSE = str(Path(sys.executable).parent / "lakehouse")  # the installed entry point (lakehouse.cli.entry)


@dataclass
class User:
    """One person at a terminal: their config folder, and the `lakehouse` command as they run it."""

    config: Path  # XDG_CONFIG_HOME
    home: Path  # an empty LAKEHOUSE_HOME

    @property
    def credentials(self) -> Path:
        return self.config / "lakehouse" / "credentials.json"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
        return {**env, "XDG_CONFIG_HOME": str(self.config), "LAKEHOUSE_HOME": str(self.home), **extra}

    def run(self, *args: str, stdin: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LAKEHOUSE, *args], env=self.env(**extra), input=stdin, capture_output=True, text=True,
                              timeout=120)


def user_at(root: Path) -> User:
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "home").mkdir(parents=True, exist_ok=True)
    return User(config=root / "config", home=root / "home")


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error a command printed: one line on stderr, no traceback."""
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr
    return err
