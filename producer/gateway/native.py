"""The native API (``/v1``): score a batch and wait, submit and collect later by batch id, the rewards
served, health and readiness. Answers carry statuses and nulls exactly as :class:`RewardClient` returns
them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from rewardq.gateway.auth import Admitted, Authenticated
from rewardq.gateway.models import (
    BatchState,
    CollectRequest,
    Health,
    Readiness,
    Rewards,
    ScoreAnswer,
    ScoreRequest,
    SubmitRequest,
    Submitted,
)
from rewardq.gateway.state import Gateway

router = APIRouter(prefix="/v1")

BatchId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The id `POST /v1/batches` answered.")]


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": {"detail": "..."}}}}


# The answers every authenticated route may give besides its own.
ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("No valid API key."),
    403: _error("The key may not score this run id or call this reward."),
    413: _error("The body is over the gateway's limit."),
    429: _error("Over the key's rate or in-flight limit; see Retry-After."),
    503: _error("The broker is unreachable, or no live worker serves a reward."),
}
BATCH_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: _error("No such batch for this key: never submitted with it, collected, or expired."),
    504: _error(
        "The batch's deadline passed with scores missing (policy `fail`); it can be collected again."
    ),
}


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


@router.post("/score", responses={**ERRORS, 409: _error("A reward's scorer changed for this run.")})
async def score(body: ScoreRequest, request: Request, caller: Admitted) -> ScoreAnswer:
    """Score a batch and wait for it (``RewardClient.score``)."""
    result = await _gateway(request).score(
        caller, body.samples, body.rewards, run_id=body.run_id, step=body.step, timeout=body.timeout
    )
    return ScoreAnswer.of(result)


@router.post("/batches", status_code=status.HTTP_202_ACCEPTED, responses=ERRORS)
async def submit(body: SubmitRequest, request: Request, caller: Admitted) -> Submitted:
    """Submit a batch and answer at once (``RewardClient.submit``); collect it later by its id."""
    gateway = _gateway(request)
    handle = await gateway.submit(
        caller,
        body.samples,
        body.rewards,
        run_id=body.run_id,
        step=body.step,
        deadline=body.deadline,
        on_deadline=body.on_deadline,
    )
    handle.detach()  # another request collects it
    return Submitted(
        batch_id=handle.batch_id, size=handle.size, weights=handle.weights, deadline_at=handle.deadline_at
    )


@router.get("/batches/{batch_id}", responses=BATCH_ERRORS)
async def peek(batch_id: BatchId, request: Request, caller: Admitted) -> BatchState:
    """What is back of a batch now, without waiting or collecting it (``ScoreHandle.partial``)."""
    ready, result = await _gateway(request).peek(caller, batch_id)
    return BatchState(ready=ready, result=ScoreAnswer.of(result))


@router.post("/batches/{batch_id}/collect", responses=BATCH_ERRORS)
async def collect(
    batch_id: BatchId, request: Request, caller: Admitted, body: CollectRequest | None = None
) -> ScoreAnswer:
    """Wait for a batch and take its scores (``ScoreHandle.get``): its deadline policy applies, and a
    collected batch is gone."""
    timeout = None if body is None else body.timeout
    return ScoreAnswer.of(await _gateway(request).collect(caller, batch_id, timeout))


@router.get("/rewards", responses=ERRORS)
async def rewards(request: Request, caller: Authenticated) -> Rewards:
    """The rewards this key may call that live workers serve, with their scorer fingerprints."""
    return Rewards(rewards=await run_in_threadpool(_gateway(request).scorers, caller))


@router.get("/health")
async def health() -> Health:
    """Liveness: the gateway answers."""
    return Health(status="ok")


@router.get("/ready", responses={503: {"model": Readiness, "description": "Not ready."}})
async def ready(request: Request, response: Response) -> Readiness:
    """Readiness: the broker answers and a live worker serves each reward the gateway needs."""
    problems = await run_in_threadpool(_gateway(request).problems)
    if problems:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(ready=not problems, problems=problems)
