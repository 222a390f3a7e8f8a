"""The app factory: the native API, the foreign protocols' routes, the error answers and the limits.

Errors keep their meaning and say nothing of other runs or of the gateway's own settings: invalid
samples are 422 naming the field (nothing was enqueued), an unknown or foreign batch 404, an unreachable
broker 503; anything else is a 500 naming only the request id (the log has the rest).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from rewardq.client import RewardClient
from rewardq.gateway import native, protocols
from rewardq.gateway.config import GatewayConfig
from rewardq.gateway.middleware import RequestIds
from rewardq.gateway.state import Gateway
from rewardq.wire.errors import (
    BrokerUnavailable,
    DeadlineExceeded,
    InvalidInputError,
    ScorerMismatchError,
    UnknownBatchError,
    UnknownRewardError,
    UnservedRewardError,
)

log = logging.getLogger(__name__)

RETRY_UNAVAILABLE_S = 5  # Retry-After of a 503: the broker or a worker is expected back


class JSONAnswer(JSONResponse):
    """JSON in ASCII: text a caller sent (echoed in an error) may hold lone surrogates, which UTF-8
    cannot encode; as ``\\uXXXX`` escapes any JSON reader takes them."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


def create_app(config: GatewayConfig, client: RewardClient | None = None) -> FastAPI:
    """The gateway's app, producing through ``client`` (default: ``RewardClient()`` from the REWARDQ_*
    settings, closed with the app; a client passed in is left to its owner)."""
    owned = client is None
    gateway = Gateway(config, client if client is not None else RewardClient())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await run_in_threadpool(gateway.connect)
        except BrokerUnavailable as e:  # readiness says so; requests get 503 until it is back
            log.warning("the broker is unreachable at start: %s", e)
        yield
        await run_in_threadpool(app.state.protocols.close)
        if owned:
            await run_in_threadpool(gateway.close)

    app = FastAPI(
        title="rewardq gateway",
        summary="Reward scoring for RL trainers over HTTP, through rewardq's queue, workers and audit.",
        version="1",
        lifespan=lifespan,
        max_body_size=config.max_body_bytes,
        default_response_class=JSONAnswer,
    )
    app.state.gateway = gateway
    app.state.protocols = protocols.Protocols.build(config.protocols, gateway)
    app.include_router(native.router)
    app.include_router(protocols.router)
    _answer_errors(app)
    app.add_middleware(RequestIds)
    return app


def _answer_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, e: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer, less the input it echoes (a NaN there could not even be encoded).
        detail = [{"type": err["type"], "loc": list(err["loc"]), "msg": err["msg"]} for err in e.errors()]
        return JSONAnswer({"detail": detail}, status_code=422)

    @app.exception_handler(InvalidInputError)
    async def invalid(request: Request, e: InvalidInputError) -> JSONResponse:
        detail = [
            {
                "type": "invalid_input",
                "loc": _loc(p.field, p.index),
                "msg": str(p),
            }
            for p in e.problems
        ]
        return JSONAnswer({"detail": detail}, status_code=422)

    @app.exception_handler(UnknownRewardError)
    async def unknown_reward(request: Request, e: UnknownRewardError) -> JSONResponse:
        # Not the error's own text: it lists every reward the gateway knows, not only this key's.
        detail = [{"type": "unknown_reward", "loc": ["body", "rewards"], "msg": f"unknown reward {e.name!r}"}]
        return JSONAnswer({"detail": detail}, status_code=422)

    @app.exception_handler(UnknownBatchError)
    async def unknown_batch(request: Request, e: UnknownBatchError) -> JSONResponse:
        detail = "no such batch for this key: never submitted with it, already collected, or expired"
        return JSONAnswer({"detail": detail}, status_code=404)

    @app.exception_handler(DeadlineExceeded)
    async def deadline(request: Request, e: DeadlineExceeded) -> JSONResponse:
        return JSONAnswer({"detail": str(e)}, status_code=504)

    @app.exception_handler(ScorerMismatchError)
    async def scorer(request: Request, e: ScorerMismatchError) -> JSONResponse:
        return JSONAnswer({"detail": str(e)}, status_code=409)

    @app.exception_handler(UnservedRewardError)
    async def unserved(request: Request, e: UnservedRewardError) -> JSONResponse:
        detail = f"no live worker serves {', '.join(e.rewards)}; nothing was enqueued"
        return _unavailable(detail)

    async def broker(request: Request, e: Exception) -> JSONResponse:
        # The client's own error masks the URL's password; Redis's and kombu's name the address. The
        # log has them, the answer none.
        log.warning("the broker is unreachable: %s: %s", type(e).__name__, e)
        return _unavailable("the broker is unreachable; nothing was enqueued unless a batch id was answered")

    for lost in (BrokerUnavailable, RedisError, OperationalError):  # reads of results raise the latter two
        app.add_exception_handler(lost, broker)


def _unavailable(detail: str) -> JSONResponse:
    return JSONAnswer({"detail": detail}, status_code=503, headers={"Retry-After": str(RETRY_UNAVAILABLE_S)})


def _loc(field: str, index: int | None) -> list[str | int]:
    """Where a sample problem is, as FastAPI's own 422s say it: ``["body", "samples", 3, "completion"]``;
    a problem of the request itself (``run_id``) is ``["body", "run_id"]``."""
    where: list[str | int] = ["body"] if index is None else ["body", "samples", index]
    return where + [p for p in field.split(".") if p]
