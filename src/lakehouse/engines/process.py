"""An engine runs in a child process of the worker, in a process group of its own, so that a cancel
(``ctx.cancelled``: run cancelled, lease lost, phase timed out) stops the whole application — the
Python driver and the JVM or dbt it started — and nothing of it outlives the phase."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from lakehouse.worker.context import PhaseCancelled, PhaseContext

GRACE_S = 10.0  # SIGTERM first (Spark's shutdown hooks stop the application), then SIGKILL (the default of
# LAKEHOUSE_PHASE_KILL_GRACE_S; the worker's settings, when it has them, say how long)
POLL_S = 0.25


def run_child(ctx: PhaseContext, argv: Sequence[str], log_path: Path, *, cwd: Path | None = None,
              env: dict[str, str] | None = None, on_poll: Callable[[], None] | None = None) -> int:
    """Run ``argv`` with stdout and stderr into ``log_path``; return its exit code. Raises
    :class:`PhaseCancelled` (after stopping the process group) once the phase must stop."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=str(cwd) if cwd else None, env=env, start_new_session=True)
        try:
            while True:
                try:
                    return proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    pass
                if on_poll is not None:
                    on_poll()
                if ctx.cancelled.is_set():
                    stop(proc, kill_grace_s(ctx))
                    raise PhaseCancelled(ctx.cancel_reason or "phase cancelled")
        except BaseException:
            if proc.poll() is None:
                stop(proc, kill_grace_s(ctx))
            raise


def kill_grace_s(ctx: PhaseContext) -> float:
    """Seconds between SIGTERM and SIGKILL: ``phase_kill_grace_s`` of the worker's settings."""
    grace = getattr(ctx.settings, "phase_kill_grace_s", None)
    return float(grace) if grace is not None else GRACE_S


def stop(proc: subprocess.Popen[bytes], grace_s: float = GRACE_S) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace_s``; wait for the child."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            if sig is signal.SIGTERM:  # the leader is gone; make sure no member of its group lingers
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, lines: int = 15, max_chars: int = 2000) -> str:
    """The last lines of a log, for an error message."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])[-max_chars:]
