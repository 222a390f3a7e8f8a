"""Per-key limits (429 with Retry-After) and the body limit (413): refused before anything is enqueued."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from rewardq import RewardClient, Settings
from tests.conftest import RedisServer, WorkerProcess
from tests.gateway.conftest import NOTHING, Keys, Served, enqueued, rows

pytestmark = pytest.mark.slow

BATCH = {"run_id": "team-a-run", "rewards": ["format"], "samples": rows(3)}


def test_over_the_rate_is_429_with_retry_after(
    keys: Keys, client: RewardClient, serve: Callable[..., Served]
) -> None:
    gateway = serve(keys.config(rate=0.01, burst=2), client)  # two requests, then one per 100 s
    with gateway.client(keys.a) as a, gateway.client(keys.b) as b:
        answers = [a.get("/v1/rewards") for _ in range(3)]
        assert [r.status_code for r in answers] == [200, 200, 429]
        assert int(answers[2].headers["Retry-After"]) >= 90
        assert answers[2].json() == {"detail": "over this key's request rate"}
        assert b.get("/v1/rewards").status_code == 200  # the limit is the key's, not everyone's


def test_over_the_in_flight_limit_is_429_and_the_running_request_completes(
    keys: Keys,
    redis_server: RedisServer,
    sqlite_url: str,
    serve: Callable[..., Served],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # No serving check, so that a batch is enqueued with no worker yet and its request stays in flight.
    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, serve_wait=0)
    with RewardClient(settings) as client:
        gateway = serve(keys.config(in_flight=1), client)
        first: dict[str, Any] = {}

        def score() -> None:
            with gateway.client(keys.a) as http:
                first["answer"] = http.post("/v1/score", json={**BATCH, "timeout": 120})

        running = threading.Thread(target=score)
        running.start()
        while enqueued(redis_server.url)["messages"] == 0:  # the first request waits for its scores
            assert running.is_alive()
            time.sleep(0.02)
        with gateway.client(keys.a) as http:
            refused = http.post("/v1/score", json=BATCH)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert enqueued(redis_server.url)["messages"] == 1  # the refused batch was not enqueued
        start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--concurrency", "1")
        running.join(timeout=150)
        assert first["answer"].status_code == 200
        assert first["answer"].json()["statuses"] == {"format": ["ok"] * 3}
        with gateway.client(keys.a) as http:  # a slot is free again by the time its answer is read
            assert [http.post("/v1/score", json=BATCH).status_code for _ in range(10)] == [200] * 10


def test_a_body_over_the_limit_is_413_and_enqueues_nothing(
    keys: Keys,
    client: RewardClient,
    worker: WorkerProcess,
    serve: Callable[..., Served],
    redis_server: RedisServer,
) -> None:
    config = keys.config().model_copy(update={"max_body_bytes": 2000})
    gateway = serve(config, client)
    big = {**BATCH, "samples": rows(40)}
    with gateway.client(keys.a) as http:
        assert http.post("/v1/score", json=BATCH).status_code == 200  # under the limit
        declared = http.post("/v1/score", json=big)

        def chunks() -> Any:  # no Content-Length: the limit holds on what is actually read
            body = httpx.Request("POST", "/", json=big).read()
            for i in range(0, len(body), 500):
                yield body[i : i + 500]

        streamed = http.post("/v1/score", content=chunks(), headers={"Content-Type": "application/json"})
    assert declared.status_code == streamed.status_code == 413
    assert enqueued(redis_server.url) == NOTHING
