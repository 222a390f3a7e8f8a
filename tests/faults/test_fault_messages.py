"""Scenario 6: messages put straight onto a reward queue with kombu, bypassing the producer: a body that
is not JSON, a wrong schema version, a pickled body (never unpickled), an oversized sample, an unknown
reward and an unknown task name. Each is refused (or, for the oversized sample, answered ``error``), the
worker stays up and keeps scoring, nothing is left in the queue; refusals are recorded in the DLQ."""

from __future__ import annotations

import json
import pickle
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection
from sqlalchemy import select

from rewardq import RewardClient, Settings
from rewardq.broker import make_app
from rewardq.storage import make_engine, scores_table
from rewardq.wire.schema import TASK_NAME
from tests.celery_messages import task_body, task_headers
from tests.conftest import WorkerProcess
from tests.faults.conftest import (
    DeliveryCheck,
    FaultRedis,
    FaultRewards,
    Submitted,
    client_settings,
    queued_messages,
    samples,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

QUEUE = "rewards.format"
MAX_RECORD_BYTES = 4096
DLQ = "rewardq:dlq"


class Unpickled:
    """Creates ``marker`` if anyone ever unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def payload(**changes: Any) -> dict[str, Any]:
    body = {
        "v": 1,
        "batch_id": uuid.uuid4().hex,
        "run_id": "faults-messages",
        "step": None,
        "reward": "format",
        "offset": 0,
        "samples": [{"prompt": "p", "completion": "<think>a</think><answer>b</answer>"}],
    }
    return body | changes


def celery_body(task_payload: dict[str, Any]) -> bytes:
    return json.dumps(task_body(task_payload)).encode()


@dataclass
class Published:
    name: str
    task_id: str


def publish(url: str, name: str, body: bytes, content_type: str, task: str = TASK_NAME) -> Published:
    """One message on the queue as Celery's protocol 2 frames it, with ``body`` as given."""
    task_id = uuid.uuid4().hex
    headers = task_headers(task_id, task=task, argsrepr=name, origin="tests/faults")
    with Connection(url) as conn:
        conn.Producer().publish(
            body,
            routing_key=QUEUE,
            exchange="",
            content_type=content_type,
            content_encoding="utf-8" if content_type == "application/json" else "binary",
            headers=headers,
            delivery_mode=2,
        )
    return Published(name, task_id)


@pytest.fixture
def hostile(
    fault_redis: FaultRedis, sqlite_url: str, tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> Iterator[tuple[WorkerProcess, dict[str, Published], Path]]:
    """A worker serving ``format`` and, on its queue, one message of each hostile kind."""
    worker = start_worker(
        fault_redis.url,
        sqlite_url,
        *("--rewards", "format", "--pool", "prefork", "--concurrency", "1"),
        env={"REWARDQ_MAX_RECORD_BYTES": str(MAX_RECORD_BYTES)},
    )
    marker = tmp_path / "unpickled"
    big = {"prompt": "p", "completion": "x" * (2 * MAX_RECORD_BYTES)}
    messages = [
        publish(fault_redis.url, "malformed JSON", b'[[{"v": 1, "batch_id": ', "application/json"),
        publish(fault_redis.url, "schema version 2", celery_body(payload(v=2)), "application/json"),
        publish(
            fault_redis.url,
            "pickled body",
            pickle.dumps(((Unpickled(marker),), {}, {})),
            "application/x-python-serialize",
        ),
        publish(
            fault_redis.url,
            "oversized sample",
            celery_body(payload(samples=[big, payload()["samples"][0]])),
            "application/json",
        ),
        publish(
            fault_redis.url,
            "unknown reward",
            celery_body(payload(reward="no_such_reward")),
            "application/json",
        ),
        publish(
            fault_redis.url, "unknown task", celery_body(payload()), "application/json", task="rewardq.nope"
        ),
    ]
    yield worker, {m.name: m for m in messages}, marker


def test_hostile_messages_are_refused_and_the_worker_keeps_scoring(
    hostile: tuple[WorkerProcess, dict[str, Published], Path],
    fault_redis: FaultRedis,
    sqlite_url: str,
    fault_rewards: FaultRewards,
    delivery_check: DeliveryCheck,
) -> None:
    worker, messages, marker = hostile
    with RewardClient(client_settings(fault_redis.url, sqlite_url, fault_rewards)) as client:
        handle = client.submit(samples(4, "after-hostile"), ["format"], run_id="faults-messages")
        result = handle.get(timeout=60)  # queued behind the hostile messages: they did not stop the worker

    counts = delivery_check(
        "malformed, pickled, oversized and unknown messages",
        [Submitted(handle.batch_id, 4, ["format"], result, {"format": {"ok", "unscorable"}})],
        database_url=sqlite_url,
        redis_url=fault_redis.url,
        trials=len(messages),
    )
    assert counts.clean, counts.problems
    assert worker.proc.poll() is None, worker.output()
    assert not marker.exists(), "the pickled body was unpickled"
    assert queued_messages(fault_redis.client()) == 0

    app = make_app(Settings.from_env({}, broker_url=fault_redis.url))
    try:
        oversized = app.AsyncResult(messages["oversized sample"].task_id).get(timeout=30)
        assert oversized["statuses"][0] == "error"
        assert "over the limit" in oversized["errors"]["0"]
        assert oversized["statuses"][1] != "error"
        for name in ("schema version 2", "unknown reward"):
            meta = app.backend.get_task_meta(messages[name].task_id, cache=False)
            answered_error = meta["status"] == "SUCCESS" and set(meta["result"]["statuses"]) == {"error"}
            assert meta["status"] == "FAILURE" or answered_error, (name, meta)
    finally:
        app.close()


def test_refused_messages_are_recorded_in_the_dead_letter_queue(
    hostile: tuple[WorkerProcess, dict[str, Published], Path],
    fault_redis: FaultRedis,
    sqlite_url: str,
    fault_rewards: FaultRewards,
) -> None:
    worker, messages, _ = hostile
    with RewardClient(client_settings(fault_redis.url, sqlite_url, fault_rewards)) as client:
        client.score(samples(2, "after-hostile"), ["format"], run_id="faults-messages", timeout=60)
    parked = {key.decode() for key in fault_redis.client().hkeys(DLQ)}
    refused = ["malformed JSON", "schema version 2", "pickled body", "unknown task"]
    missing = [name for name in refused if messages[name].task_id not in parked]
    assert missing == [], f"not recorded in {DLQ}: {missing}"
    # A well-formed task naming a reward no worker knows is not undeliverable: it is answered `error` and
    # recorded in the audit, like any sample its reward cannot score.
    assert messages["unknown reward"].task_id not in parked
    with make_engine(sqlite_url).connect() as conn:
        rows = conn.execute(
            select(scores_table.c.status, scores_table.c.error).where(
                scores_table.c.reward == "no_such_reward"
            )
        ).all()
    assert [status for status, _ in rows] == ["error"] and "no_such_reward" in rows[0][1], rows
    assert worker.proc.poll() is None, worker.output()
