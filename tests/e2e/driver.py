"""Drive a run through the real services and the real handlers, in this process (no HTTP): the
same claim → handler → complete/fail path a worker takes, minus the network, for fast data tests."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from lakehouse.services import protocol, runs
from lakehouse.services.auth import SYSTEM, Principal
from lakehouse.services.context import Context
from lakehouse.worker.context import PhaseContext, PhaseError
from lakehouse.worker.registry import load_handlers

HANDLERS = load_handlers()
EXECUTOR = Principal(name="test-driver", role="executor")


def drive(ctx: Context, run_id: str, max_steps: int = 100) -> dict[str, Any]:
    for _ in range(max_steps):
        run = runs.get_run(ctx, run_id, SYSTEM)
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        claims = protocol.claim(ctx, EXECUTOR, "test-driver", sorted(HANDLERS), run_id=run_id)
        if not claims:
            protocol.reap(ctx)
            import time

            time.sleep(0.02)  # a retry in backoff (tests use a 10-50 ms backoff)
            continue
        c = claims[0]
        with tempfile.TemporaryDirectory() as tmp:
            pctx = PhaseContext(run_id=c["run_id"], phase=c["phase"], phase_type=c["phase_type"],
                                attempt=c["attempt"], params=c["params"], input_manifest=c["input_manifest"],
                                previous_outputs=c["previous_outputs"], environment=c["environment"],
                                spec_slug=c["spec_slug"], git_sha=c["git_sha"], workspace=c["workspace"],
                                workdir_path=Path(tmp), lease_token=c["lease_token"],
                                client=InProcessClient(ctx))  # type: ignore[arg-type]
            try:
                manifest = HANDLERS[c["phase_type"]](pctx) or {}
            except PhaseError as exc:
                events, _ = pctx.drain()
                protocol.fail(ctx, EXECUTOR, run_id, c["lease_token"], str(exc), exc.retryable, _events(events))
                continue
            except Exception as exc:
                events, _ = pctx.drain()
                protocol.fail(ctx, EXECUTOR, run_id, c["lease_token"], f"{type(exc).__name__}: {exc}", True,
                              _events(events))
                continue
            events, _ = pctx.drain()
            protocol.complete(ctx, EXECUTOR, run_id, c["lease_token"], manifest, _events(events))
    raise AssertionError(f"run {run_id} did not finish in {max_steps} steps")


class InProcessClient:
    """The calls a handler makes through ``PhaseContext.client``, answered by the services directly."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def phase_query(self, run_id: str, lease_token: str, sql: str, preview_rows: int = 20,
                    name: str = "result.parquet") -> dict[str, Any]:
        import asyncio

        from lakehouse.services import phase_query
        from lakehouse.services.errors import ServiceError
        from lakehouse.worker.client import ContractError

        try:
            return asyncio.run(phase_query.run_for_lease(self.ctx, EXECUTOR, run_id, lease_token, sql, preview_rows,
                                                         name))
        except ServiceError as exc:
            raise ContractError(exc.status, exc.code, exc.message) from None

    def upload_artifact(self, run_id: str, phase: str, name: str, path: Path, media_type: str,
                        metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        import asyncio
        import hashlib

        from lakehouse.services import artifacts

        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()

        async def chunks() -> Any:
            yield data

        asyncio.run(artifacts.upload(self.ctx, sha, chunks()))
        art, _ = artifacts.register(self.ctx, {"run_id": run_id, "phase": phase, "name": name, "sha256": sha,
                                               "size_bytes": len(data), "media_type": media_type,
                                               "metadata": metadata or {}}, EXECUTOR)
        return art


def _events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from datetime import datetime

    return [{**e, "ts": datetime.fromisoformat(e["ts"])} for e in events]
