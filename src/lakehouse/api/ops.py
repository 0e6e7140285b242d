"""The executor contract (docs/executor-contract.md): /ops/…"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from lakehouse.api import schemas as s
from lakehouse.api.deps import context, require
from lakehouse.api.errors import QUEUE_CAP, STORE_ERRORS
from lakehouse.domain.principal import Principal
from lakehouse.domain.roles import Action
from lakehouse.domain.rules import Environment
from lakehouse.domain.runs import RunRequest
from lakehouse.domain.states import RUN_FINISHED, RunStatus
from lakehouse.services import artifacts, executors, protocol, runs
from lakehouse.services.context import Context
from lakehouse.services.errors import NotFound

router = APIRouter(prefix="/ops", tags=["executor contract"])
ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": s.ErrorResponse} for c in (400, 401, 403, 404, 409, 413, 422)
}
# routes that create runs: a queue cap in reject mode answers 429 (503 database_unavailable: every route)
CREATE_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, **QUEUE_CAP}


def _events(events: list[s.EventIn] | None) -> list[dict[str, Any]] | None:
    return [e.model_dump() for e in events] if events else None


def _fast(payload: Any, status_code: int = 200) -> Response:
    """The hot executor calls answer with orjson straight from the service's dicts: the
    ``response_model`` documents the shape (OpenAPI) without a second validation pass."""
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")


def _claim_next(body: s.ClaimNextIn | None) -> tuple[dict[str, Any] | None, list[str]]:
    if body is None:
        return None, []
    return body.model_dump(exclude={"cached_runs"}), body.cached_runs


@router.post("/runs", status_code=201, response_model=s.RunOut, responses=CREATE_ERRORS)
def create_run(body: RunRequest, response: Response, ctx: Context = Depends(context),
               p: Principal = Depends(require(Action.RUN_CREATE))) -> dict[str, Any]:
    """Create a run; a repeated ``idempotency_key`` returns the same run with 200."""
    run, created = runs.create_run(ctx, body, p)
    if not created:
        response.status_code = 200
    return run


@router.get("/runs", response_model=s.RunList, responses=ERRORS)
def list_runs(ctx: Context = Depends(context), p: Principal = Depends(require(Action.RUN_READ)),
              status: RunStatus | None = None, spec_slug: str | None = None,
              environment: Environment | None = None,
              before: str | None = None, limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
    items = runs.list_runs(ctx, p, status=status.value if status else None, spec_slug=spec_slug,
                           environment=environment.value if environment else None,
                           limit=limit, before=before)
    return {"runs": items, "next_before": items[-1]["run_id"] if len(items) == limit else None}


async def _long_poll(ctx: Context, p: Principal, body: s.ClaimIn, run_id: str | None, request: Request
                     ) -> list[dict[str, Any]]:
    deadline = time.monotonic() + body.wait_s
    waited = False
    while True:
        if waited and await request.is_disconnected():
            return []  # the executor went away while waiting: lease nothing to it
        generation = ctx.waker.generation  # a wake-up during the claim is not lost
        claims = await run_in_threadpool(protocol.claim, ctx, p, body.executor_id, body.capabilities,
                                         max_phases=body.max_phases, run_id=run_id, start=body.start,
                                         cached=body.cached_runs)
        if claims and waited and await request.is_disconnected():
            for c in claims:  # it left between the check and the claim: give the work back
                await run_in_threadpool(protocol.release, ctx, p, c["run_id"], c["lease_token"],
                                        "the executor disconnected before it got the lease")
            return []
        remaining = deadline - time.monotonic()
        if claims or remaining <= 0 or ctx.waker.closed:
            return claims
        await ctx.waker.wait_ready(remaining, since=generation)
        waited = True


def _claim_answer(claims: list[dict[str, Any]], body: s.ClaimIn) -> Any:
    if not claims:
        return Response(status_code=204)
    if body.max_phases > 1:
        return _fast({"claims": claims})
    return _fast(claims[0])


@router.post("/claim", response_model=s.Claim | s.Claims, responses={204: {"description": "no work"}, **ERRORS})
async def claim(body: s.ClaimIn, request: Request, ctx: Context = Depends(context),
                p: Principal = Depends(require(Action.EXECUTE))) -> Any:
    """Lease the next runnable phase(s) this executor can run; long-polls up to ``wait_s``.
    With ``max_phases`` > 1 the answer is ``{"claims": [...]}``."""
    return _claim_answer(await _long_poll(ctx, p, body, None, request), body)


@router.post("/runs/{run_id}/claim", response_model=s.Claim | s.Claims,
             responses={204: {"description": "no work"}, **ERRORS})
async def claim_run(run_id: str, body: s.ClaimIn, request: Request, ctx: Context = Depends(context),
                    p: Principal = Depends(require(Action.EXECUTE))) -> Any:
    return _claim_answer(await _long_poll(ctx, p, body, run_id, request), body)


@router.post("/runs/{run_id}/heartbeat", response_model=s.HeartbeatOut, responses=ERRORS)
def heartbeat(run_id: str, body: s.HeartbeatIn, ctx: Context = Depends(context),
              p: Principal = Depends(require(Action.EXECUTE))) -> Any:
    return _fast(protocol.heartbeat(ctx, p, run_id, body.lease_token, body.progress, _events(body.events)))


@router.post("/heartbeat", response_model=s.HeartbeatManyOut, response_model_exclude_none=True, responses=ERRORS)
def heartbeat_many(body: s.HeartbeatManyIn, ctx: Context = Depends(context),
                   p: Principal = Depends(require(Action.EXECUTE))) -> dict[str, Any]:
    """Extend every lease an executor holds in one call (a batched claim's waiting phases too);
    each item answers on its own (``error.code`` ``lease_lost`` when that lease is gone)."""
    leases = [{"run_id": b.run_id, "lease_token": b.lease_token, "progress": b.progress,
               "events": _events(b.events)} for b in body.leases]
    return protocol.heartbeat_many(ctx, p, leases)


@router.post("/runs/{run_id}/events", response_model=s.Accepted, responses=ERRORS)
def post_events(run_id: str, body: s.EventsIn, ctx: Context = Depends(context),
                p: Principal = Depends(require(Action.EXECUTE))) -> dict[str, Any]:
    """Append executor events; a repeated ``event_id`` is ignored."""
    return {"accepted": protocol.post_events(ctx, p, run_id, _events(body.events) or [], body.lease_token)}


@router.post("/runs/{run_id}/complete", response_model=s.CompleteOut, response_model_exclude_none=True,
             responses=ERRORS)
def complete(run_id: str, body: s.CompleteIn, ctx: Context = Depends(context),
             p: Principal = Depends(require(Action.EXECUTE))) -> Any:
    nxt, cached = _claim_next(body.claim_next)
    return _fast(protocol.complete(ctx, p, run_id, body.lease_token, body.output_manifest, _events(body.events),
                                   claim_next=nxt, cached=cached))


@router.post("/complete", response_model=s.CompleteManyOut, response_model_exclude_none=True, responses=ERRORS)
def complete_many(body: s.CompleteManyIn, ctx: Context = Depends(context),
                  p: Principal = Depends(require(Action.EXECUTE))) -> Any:
    """Complete a batch of phases in one transaction (each item answers on its own), and lease the
    executor's next batch in the same call with ``claim_next``."""
    items = [{"run_id": c.run_id, "lease_token": c.lease_token, "output_manifest": c.output_manifest,
              "events": _events(c.events)} for c in body.completions]
    nxt, cached = _claim_next(body.claim_next)
    answer = protocol.complete_many(ctx, p, items, nxt, cached)
    for r in answer["results"]:  # the documented shape leaves out what is not there
        if "error" in r and r["error"].get("details") is None:
            r["error"].pop("details", None)
    return _fast(answer)


@router.post("/runs/{run_id}/fail", response_model=s.FailOut, responses=ERRORS)
def fail(run_id: str, body: s.FailIn, ctx: Context = Depends(context),
         p: Principal = Depends(require(Action.EXECUTE))) -> dict[str, Any]:
    return protocol.fail(ctx, p, run_id, body.lease_token, body.error, body.retryable, _events(body.events),
                         kind=body.kind)


@router.post("/runs/{run_id}/release", response_model=s.ReleaseOut, responses=ERRORS)
def release(run_id: str, body: s.ReleaseIn, ctx: Context = Depends(context),
            p: Principal = Depends(require(Action.EXECUTE))) -> dict[str, Any]:
    """Give a leased phase back without counting the attempt (e.g. the executor is shutting down)."""
    return protocol.release(ctx, p, run_id, body.lease_token, body.reason)


@router.post("/runs/{run_id}/cancel", response_model=s.RunOut, responses=ERRORS)
def cancel(run_id: str, ctx: Context = Depends(context),
           p: Principal = Depends(require(Action.RUN_CANCEL))) -> dict[str, Any]:
    return runs.cancel_run(ctx, run_id, p)


@router.get("/runs/{run_id}", response_model=s.RunOut, responses=ERRORS)
def get_run(run_id: str, ctx: Context = Depends(context), p: Principal = Depends(require(Action.RUN_READ))
            ) -> dict[str, Any]:
    return runs.get_run(ctx, run_id, p)


@router.get("/runs/{run_id}/events", response_model=s.EventList, responses=ERRORS)
def get_events(run_id: str, after: int = Query(0, ge=0), limit: int = Query(1000, ge=1, le=10_000),
               ctx: Context = Depends(context), p: Principal = Depends(require(Action.RUN_READ))) -> dict[str, Any]:
    return {"events": runs.read_events(ctx, run_id, p, after, limit)}


@router.get("/runs/{run_id}/events/stream", responses={200: {"content": {"text/event-stream": {}}}, **ERRORS})
async def stream_events(run_id: str, request: Request, after: int = Query(0, ge=0),
                        ctx: Context = Depends(context), p: Principal = Depends(require(Action.RUN_READ))
                        ) -> StreamingResponse:
    """Server-sent events of a run's trail; resumes after ``Last-Event-ID``; ends when the run has
    finished and every event was sent."""
    last = request.headers.get("last-event-id")
    start = int(last) if last and last.isdigit() else after
    await run_in_threadpool(runs.get_run, ctx, run_id, p)  # 404 before the stream starts
    return StreamingResponse(_sse(ctx, run_id, p, start, request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _sse(ctx: Context, run_id: str, p: Principal, after: int, request: Request) -> AsyncIterator[bytes]:
    finished = False
    while True:
        events = await run_in_threadpool(runs.read_events, ctx, run_id, p, after, 1000)
        for e in events:
            after = e["seq"]
            yield b"id: %d\nevent: %s\ndata: %s\n\n" % (e["seq"], e["type"].encode(), orjson.dumps(e))
        if events:
            continue
        if finished:
            yield b"event: end\ndata: {}\n\n"
            return
        status = await run_in_threadpool(runs.run_status, ctx, run_id)
        if status is None or RunStatus(status) in RUN_FINISHED:
            finished = True  # read once more: the run may have finished after the read above
            continue
        if await request.is_disconnected():
            return
        if ctx.waker.closed:
            return
        if not await ctx.waker.wait_run(run_id, 15.0):
            yield b": keep-alive\n\n"
        await asyncio.sleep(0)


@router.post("/artifacts", response_model=s.ArtifactOut, status_code=201, responses=ERRORS)
def register_artifact(body: s.ArtifactIn, response: Response, ctx: Context = Depends(context),
                      p: Principal = Depends(require(Action.EXECUTE))) -> dict[str, Any]:
    """Register an artifact of a run's phase; the content is uploaded with PUT first."""
    art, created = artifacts.register(ctx, body.model_dump(), p)
    if not created:
        response.status_code = 200
    return art


@router.put("/artifacts/{sha256}", response_model=s.UploadOut, responses={**ERRORS, **STORE_ERRORS},
            openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}})
async def upload_artifact(sha256: s.Sha256Param, request: Request, ctx: Context = Depends(context),
                          p: Principal = Depends(require(Action.EXECUTE)),
                          run_id: str | None = Query(None, max_length=36, description=(
                              "the run the content is for: it becomes that run's workspace's (without it, the "
                              "uploading account's until it registers it on a run)"))) -> dict[str, Any]:
    """Upload content; the server checks it against ``sha256`` (422 ``sha256_mismatch`` if not). Every
    upload carries the body: content another workspace stored is not this one's until it is uploaded."""
    return await artifacts.upload(ctx, sha256, request.stream(), p, run_id)


@router.get("/artifacts/{sha256}", responses={200: {"content": {"application/octet-stream": {}}}, **ERRORS,
                                             503: STORE_ERRORS[503]})
def download_artifact(sha256: s.Sha256Param, ctx: Context = Depends(context),
                      p: Principal = Depends(require(Action.RUN_READ))) -> StreamingResponse:
    """The content of an artifact, streamed by the control plane from whichever store holds it (a local
    folder or S3: never a redirect to the bucket); ``Content-Length`` lets a client see a cut-off body."""
    meta, content = artifacts.open_blob(ctx, sha256, p)
    headers = {"Content-Disposition": artifacts.content_disposition(meta["name"])}
    if meta["size_bytes"] is not None:
        headers["Content-Length"] = str(meta["size_bytes"])
    return StreamingResponse(content, media_type=meta["media_type"], headers=headers)


@router.get("/runs/{run_id}/artifacts", response_model=s.ArtifactList, responses=ERRORS)
def run_artifacts(run_id: str, ctx: Context = Depends(context), p: Principal = Depends(require(Action.RUN_READ))
                  ) -> dict[str, Any]:
    return {"artifacts": artifacts.list_for_run(ctx, run_id, p)}


@router.get("/executors", response_model=s.ExecutorList, responses=ERRORS)
def list_executors(ctx: Context = Depends(context), p: Principal = Depends(require(Action.RUN_READ))) -> dict[str, Any]:
    """Executors seen, with what each runs now; the run of a workspace the caller cannot see is blanked."""
    return {"executors": executors.list_executors(ctx, p)}


@router.post("/executors/{executor_id}/stopped", response_model=s.ExecutorStoppedOut, responses=ERRORS)
def executor_stopped(executor_id: str, body: s.ExecutorStoppedIn, ctx: Context = Depends(context),
                     p: Principal = Depends(require(Action.EXECUTE))) -> dict[str, Any]:
    """An executor shutting down cleanly says goodbye: listed as stopped, not stale, until it calls
    again. Only the account whose claim registered that id may (403 ``not_your_executor``)."""
    return executors.mark_stopped(ctx, p, executor_id, body.reason)


@router.delete("/executors/{executor_id}", response_model=s.ExecutorsForgotten, responses=ERRORS)
def forget_executor(executor_id: str, ctx: Context = Depends(context),
                    p: Principal = Depends(require(Action.ADMIN))) -> dict[str, Any]:
    """Forget a stopped or silent executor (admins; audited). One holding a lease is kept (404)."""
    gone = executors.forget(ctx, p, executor_id=executor_id)
    if not gone:
        raise NotFound(f"executor {executor_id} not found or holding a lease", code="executor_not_found")
    return {"forgotten": gone}
