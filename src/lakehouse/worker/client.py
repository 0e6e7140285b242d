"""A thin client of the executor contract over HTTP (implements worker/contract.py's
:class:`~lakehouse.worker.contract.ExecutorApi`). A call that gets no answer raises
:class:`~lakehouse.worker.contract.ServerUnreachable`, so the worker above it knows nothing of httpx."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from lakehouse.worker.contract import ContractError, FailKind, LeaseLostError, ServerUnreachable

__all__ = ["ContractError", "ExecutorClient", "LeaseLostError", "ServerUnreachable"]


def _reaching(send: Callable[[], httpx.Response]) -> httpx.Response:
    try:
        return send()
    except httpx.HTTPError as exc:
        raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from exc


class ExecutorClient:
    def __init__(self, server: str, token: str, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        # one pooled HTTP/1.1 keep-alive client for the worker and its heartbeat thread
        self.http = httpx.Client(base_url=self.server, timeout=httpx.Timeout(timeout, read=timeout + 70),
                                 headers={"Authorization": f"Bearer {token}"},
                                 limits=httpx.Limits(max_connections=4, max_keepalive_connections=2))

    def close(self) -> None:
        self.http.close()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        r = _reaching(lambda: self.http.post(path, content=orjson.dumps(body),
                                             headers={"content-type": "application/json"}))
        return self._answer(r)

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._answer(_reaching(lambda: self.http.get(path, params=params)))

    @staticmethod
    def _answer(r: httpx.Response) -> Any:
        if r.status_code == 204:
            return None
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
            except Exception:
                err = {"code": "http_error", "message": r.text[:500]}
            cls = LeaseLostError if r.status_code == 409 and err["code"].startswith("lease") else ContractError
            raise cls(r.status_code, err["code"], err["message"])
        return orjson.loads(r.content)

    def create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._post("/ops/runs", body)  # type: ignore[no-any-return]

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._get(f"/ops/runs/{run_id}")  # type: ignore[no-any-return]

    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        return self._get(f"/ops/runs/{run_id}/events", {"after": after})["events"]  # type: ignore[no-any-return]

    def claim(self, executor_id: str, capabilities: list[str], wait_s: float = 0, max_phases: int = 1,
              run_id: str | None = None, cached_runs: list[str] | None = None) -> list[dict[str, Any]]:
        """Lease work; a run in ``cached_runs`` (its input manifest is held here) comes without it."""
        path = f"/ops/runs/{run_id}/claim" if run_id else "/ops/claim"
        body: dict[str, Any] = {"executor_id": executor_id, "capabilities": capabilities, "wait_s": wait_s,
                                "max_phases": max_phases}
        if cached_runs:
            body["cached_runs"] = cached_runs
        out = self._post(path, body)
        if out is None:
            return []
        claims: list[dict[str, Any]] = out.get("claims", [out])
        return claims

    def heartbeat(self, run_id: str, lease_token: str, progress: dict[str, Any] | None = None,
                  events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"lease_token": lease_token}
        if progress is not None:
            body["progress"] = progress
        if events:
            body["events"] = events
        return self._post(f"/ops/runs/{run_id}/heartbeat", body)  # type: ignore[no-any-return]

    def heartbeat_many(self, leases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Extend several leases in one call: ``[{run_id, lease_token, progress?, events?}]``; the
        answer has one item per lease, in order, with ``error`` when that lease is gone."""
        body = {"leases": [{k: v for k, v in lease.items() if v is not None and v != []} for lease in leases]}
        return self._post("/ops/heartbeat", body)["results"]  # type: ignore[no-any-return]

    def complete(self, run_id: str, lease_token: str, output_manifest: dict[str, Any],
                 events: list[dict[str, Any]] | None = None, claim_next: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
        body: dict[str, Any] = {"lease_token": lease_token, "output_manifest": output_manifest}
        if events:
            body["events"] = events
        if claim_next:
            body["claim_next"] = claim_next
        return self._post(f"/ops/runs/{run_id}/complete", body)  # type: ignore[no-any-return]

    def complete_many(self, completions: list[dict[str, Any]], claim_next: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
        body: dict[str, Any] = {"completions": [{k: v for k, v in c.items() if v} | {"output_manifest":
                                                c.get("output_manifest") or {}} for c in completions]}
        if claim_next:
            body["claim_next"] = claim_next
        return self._post("/ops/complete", body)  # type: ignore[no-any-return]

    def fail(self, run_id: str, lease_token: str, error: str, retryable: bool = True,
             events: list[dict[str, Any]] | None = None, kind: FailKind = "error") -> dict[str, Any]:
        body: dict[str, Any] = {"lease_token": lease_token, "error": error, "retryable": retryable}
        if events:
            body["events"] = events
        if kind != "error":
            body["kind"] = kind
        return self._post(f"/ops/runs/{run_id}/fail", body)  # type: ignore[no-any-return]

    def release(self, run_id: str, lease_token: str, reason: str) -> dict[str, Any]:
        return self._post(f"/ops/runs/{run_id}/release",  # type: ignore[no-any-return]
                          {"lease_token": lease_token, "reason": reason})

    def mark_stopped(self, executor_id: str, reason: str) -> dict[str, Any]:
        """Say goodbye: the registry shows this executor as stopped, not stale."""
        from urllib.parse import quote

        return self._post(f"/ops/executors/{quote(executor_id, safe='')}/stopped",  # type: ignore[no-any-return]
                          {"reason": reason})

    def post_events(self, run_id: str, events: list[dict[str, Any]], lease_token: str | None = None) -> int:
        body: dict[str, Any] = {"events": events}
        if lease_token:
            body["lease_token"] = lease_token
        return self._post(f"/ops/runs/{run_id}/events", body)["accepted"]  # type: ignore[no-any-return]

    def upload_artifact(self, run_id: str, phase: str, name: str, path: Path, media_type: str,
                        metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        h = hashlib.sha256()
        size = 0
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
                size += len(block)
        sha = h.hexdigest()
        with path.open("rb") as fh:
            self._answer(_reaching(lambda: self.http.put(f"/ops/artifacts/{sha}", content=fh,
                                                         params={"run_id": run_id},  # the run's workspace's
                                                         headers={"content-type": "application/octet-stream"})))
        return self._post("/ops/artifacts", {  # type: ignore[no-any-return]
            "run_id": run_id, "phase": phase, "name": name, "sha256": sha, "size_bytes": size,
            "media_type": media_type, "metadata": metadata or {},
        })

    def phase_query(self, run_id: str, lease_token: str, sql: str, preview_rows: int = 20,
                    name: str = "result.parquet") -> dict[str, Any]:
        """Have the control plane run a ``query`` phase's SQL as the run's creator (handlers/query.py)."""
        return self._post(f"/ops/runs/{run_id}/query", {  # type: ignore[no-any-return]
            "lease_token": lease_token, "sql": sql, "preview_rows": preview_rows, "name": name})

    def lease_connection(self, run_id: str, lease_token: str, name: str) -> dict[str, Any]:
        """A stored connection the run declared, with its secrets, for this lease only (keep it in memory)."""
        from urllib.parse import quote

        return self._post(f"/ops/runs/{run_id}/connections/{quote(name, safe='')}",  # type: ignore[no-any-return]
                          {"lease_token": lease_token})
