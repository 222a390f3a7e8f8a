"""The native API against a real worker: the same scores, statuses and nulls as RewardClient, the
handles' semantics for batches collected later (deadline, on_deadline, partial results), the rewards
served, readiness."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from rewardq import RewardClient, Settings
from rewardq.wire.keys import priority_lists
from rewardq.wire.schema import queue_for
from tests.conftest import RedisServer, WorkerProcess
from tests.gateway.conftest import Keys, Served, enqueued, rows

pytestmark = pytest.mark.slow


def _errors(errors: dict[str, dict[int, str]]) -> dict[str, dict[str, str]]:
    """A ScoreResult's errors as JSON has them (sample indices as strings)."""
    return {reward: {str(i): text for i, text in per.items()} for reward, per in errors.items()}


def test_score_matches_the_python_client(gateway: Served, keys: Keys, client: RewardClient) -> None:
    samples = [*rows(9), {"completion": "no solution column"}]  # accuracy: unscorable, with an error
    weights = {"accuracy": 1.0, "format": 0.5}
    expected = client.score(samples, weights, run_id="team-a-direct", step=1, timeout=60)
    with gateway.client(keys.a) as http:
        answer = http.post(
            "/v1/score", json={"run_id": "team-a-run", "step": 1, "rewards": weights, "samples": samples}
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert expected.rewards["accuracy"][-1] is None and 9 in expected.errors["accuracy"]  # nulls kept
    assert body["rewards"] == expected.rewards
    assert body["statuses"] == expected.statuses
    assert body["totals"] == expected.totals
    assert body["weights"] == expected.weights
    assert body["errors"] == _errors(expected.errors)
    assert len(answer.headers["X-Request-ID"]) == 32
    with gateway.client(keys.a) as http:  # a batch answered in full is gone, as after ScoreHandle.get
        assert http.get(f"/v1/batches/{body['batch_id']}").status_code == 404
    assert enqueued(client.settings.broker_url or "")["batches"] == 0
    owners = redis.Redis.from_url(client.settings.broker_url or "").keys("rewardq-gateway-owner-*")
    assert owners == []  # nothing is kept for it


def test_submit_peek_collect_matches_the_python_client(
    gateway: Served, keys: Keys, client: RewardClient
) -> None:
    samples = rows(10)
    expected = client.score(samples, ["accuracy", "format"], run_id="team-a-direct", timeout=60)
    with gateway.client(keys.a) as http:
        submitted = http.post(
            "/v1/batches",
            json={"run_id": "team-a-run", "rewards": ["accuracy", "format"], "samples": samples},
        )
        assert submitted.status_code == 202, submitted.text
        batch = submitted.json()
        assert (batch["size"], batch["weights"], batch["deadline_at"]) == (
            10,
            {"accuracy": 1.0, "format": 1.0},
            None,
        )
        path = f"/v1/batches/{batch['batch_id']}"
        while not (peeked := http.get(path).json())["ready"]:  # peeking never consumes the batch
            time.sleep(0.05)
        collected = http.post(f"{path}/collect", json={"timeout": 60})
    assert collected.status_code == 200
    for body in (peeked["result"], collected.json()):
        assert body["batch_id"] == batch["batch_id"]
        assert body["rewards"] == expected.rewards
        assert body["statuses"] == expected.statuses
        assert body["totals"] == expected.totals


def _no_serving_check(redis_server: RedisServer, sqlite_url: str, **settings: Any) -> RewardClient:
    """A client that enqueues with no worker running (REWARDQ_SERVE_WAIT=0)."""
    return RewardClient(
        Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, serve_wait=0, **settings)
    )


def test_deadline_policies_as_the_handles_apply_them(
    keys: Keys,
    redis_server: RedisServer,
    sqlite_url: str,
    serve: Callable[..., Served],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    batch = {"run_id": "team-a-run", "rewards": {"format": 1.0}, "samples": rows(3)}
    with (
        _no_serving_check(redis_server, sqlite_url) as client,
        serve(keys.config(), client).client(keys.a) as http,
    ):
        partial = http.post("/v1/batches", json={**batch, "deadline": 0.2}).json()
        fail = http.post("/v1/batches", json={**batch, "deadline": 0.2, "on_deadline": "fail"}).json()
        assert fail["deadline_at"] is not None
        waiting = http.get(f"/v1/batches/{partial['batch_id']}").json()
        assert waiting["ready"] is False
        assert waiting["result"]["statuses"] == {"format": ["timeout"] * 3}
        assert waiting["result"]["errors"]["format"]["0"].startswith("not ready yet")

        missed = http.post(f"/v1/batches/{partial['batch_id']}/collect", json={"timeout": 60})
        assert missed.status_code == 200  # partial: what is back, the rest `timeout` with null values
        assert missed.json()["statuses"] == {"format": ["timeout"] * 3}
        assert missed.json()["rewards"] == {"format": [None] * 3}
        assert missed.json()["totals"] == [None] * 3
        assert "by the batch's deadline" in missed.json()["errors"]["format"]["0"]

        refused = http.post(f"/v1/batches/{fail['batch_id']}/collect", json={"timeout": 60})
        assert refused.status_code == 504  # fail: DeadlineExceeded, and the batch is kept
        assert "not back by the deadline" in refused.json()["detail"]
        start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--concurrency", "1")
        while not http.get(f"/v1/batches/{fail['batch_id']}").json()["ready"]:
            time.sleep(0.05)
        kept = http.post(f"/v1/batches/{fail['batch_id']}/collect", json={"timeout": 60})
        assert kept.status_code == 200
        assert kept.json()["statuses"] == {"format": ["ok"] * 3}


def test_a_chunk_lost_by_the_broker_is_sent_again_while_a_request_waits(
    keys: Keys,
    redis_server: RedisServer,
    sqlite_url: str,
    serve: Callable[..., Served],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    broker = redis.Redis.from_url(redis_server.url)
    with _no_serving_check(redis_server, sqlite_url, resend_after=1) as client:
        gateway = serve(keys.config(), client)
        answer: dict[str, Any] = {}

        def score() -> None:
            with gateway.client(keys.a) as http:
                body = {"run_id": "team-a-run", "rewards": ["format"], "samples": rows(3), "timeout": 60}
                answer["score"] = http.post("/v1/score", json=body)

        waiting = threading.Thread(target=score)
        waiting.start()
        lost = None
        while lost is None:  # as a broker restart can lose it: the message leaves its queue unanswered
            for key in priority_lists(queue_for("format")):
                lost = broker.lpop(key) or lost
            time.sleep(0.02)
        assert json.loads(lost)["headers"]["task"]
        start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--concurrency", "1")
        waiting.join(timeout=90)
    assert answer["score"].status_code == 200
    assert answer["score"].json()["statuses"] == {"format": ["ok"] * 3}


def test_the_rewards_served_with_their_fingerprints(
    gateway: Served, keys: Keys, client: RewardClient, redis_server: RedisServer
) -> None:
    expected = client.scorers(["accuracy", "format"])
    assert all(expected.values())
    with gateway.client(keys.a) as a, gateway.client(keys.b) as b:
        mine = a.get("/v1/rewards")
        everything = b.get("/v1/rewards")  # "*": every reward served, and only those
    assert mine.json() == {"rewards": expected}
    assert everything.json() == {"rewards": expected}
    assert enqueued(redis_server.url)["messages"] == 0


def test_health_and_readiness(
    keys: Keys,
    client: RewardClient,
    redis_server: RedisServer,
    sqlite_url: str,
    serve: Callable[..., Served],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    gateway = serve(keys.config(), client)  # key a names accuracy and format: both must be served
    with gateway.client() as http:
        assert http.get("/v1/health").json() == {"status": "ok"}
        unserved = http.get("/v1/ready")
        assert unserved.status_code == 503
        assert unserved.json() == {
            "ready": False,
            "problems": ["2 reward(s) the gateway needs have no live worker"],
        }
        start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--concurrency", "1")
        assert http.get("/v1/ready").json()["problems"] == [
            "1 reward(s) the gateway needs have no live worker"
        ]
        start_worker(redis_server.url, sqlite_url, "--rewards", "accuracy", "--concurrency", "1")
        ready = http.get("/v1/ready")
        assert (ready.status_code, ready.json()) == (200, {"ready": True, "problems": []})
        submitted = http.post(
            "/v1/batches",
            json={"run_id": "team-a-run", "rewards": ["format"], "samples": rows(2)},
            headers={"Authorization": f"Bearer {keys.a}"},
        )
        redis_server.stop()
        down = http.get("/v1/ready")
        assert (down.status_code, down.json()["problems"]) == (503, ["the broker is unreachable"])
        assert http.get("/v1/health").status_code == 200  # alive all the same
        with gateway.client(keys.a) as a:  # requests answer 503, never 500, and name no address
            peeked = a.get(f"/v1/batches/{submitted.json()['batch_id']}")
            rewards = a.get("/v1/rewards")
        for answer in (peeked, rewards):
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"] == "5"
            assert str(redis_server.port) not in answer.text
