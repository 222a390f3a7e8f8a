"""The dead-letter queue against real workers: a poison task (its reward kills the worker process every
time) is parked after ``max_deliveries``, audited and answered ``error`` while the rest of its batch is
scored; ``rewardq dlq list`` shows it and ``rewardq dlq replay`` scores it, as a new batch, once the
reward is fixed. Malformed, pickled and unknown messages put straight on a queue are recorded there too,
and the worker stays up."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from kombu import Connection, Exchange, Producer

from rewardq import RewardClient, Settings
from rewardq.storage import make_engine
from rewardq.wire.schema import TASK_NAME, queue_for
from rewardq.workers.runtime.dlq import DeadLetter
from tests.conftest import RedisServer, WorkerProcess
from tests.workers.test_cli import rewardq

GOOD = "<think>a</think>\n<answer>b</answer>"
# A format task's envelope in a wire version no worker speaks: parked, never scored.
UNKNOWN_VERSION = {
    "v": 99,
    "batch_id": "b-1",
    "run_id": "r",
    "reward": "format",
    "samples": [{"completion": "a"}],
}


def function_reward(tmp_path: Path, name: str, source: str) -> Path:
    """A rewards file with one ``function`` reward (TRL convention) ``name`` whose module is ``source``
    (it defines ``score(completions, **kwargs)``); returns the rewards file."""
    (tmp_path / f"{name}_reward.py").write_text(source)
    rewards = tmp_path / "rewards.toml"
    rewards.write_text(
        f'[rewards.{name}]\nkind = "function"\nfunction = "{name}_reward.py:score"\nconvention = "trl"\n'
    )
    return rewards


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 120.0) -> Any:
    """Poll ``condition`` until it returns something true; fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s")


def dlq_entries(broker_url: str) -> list[DeadLetter]:
    out = rewardq("dlq", "list", "--json", env={"REWARDQ_BROKER_URL": broker_url}).stdout
    return [DeadLetter(**e) for e in json.loads(out)]


POISON = """
import os, signal
from pathlib import Path

FIXED = Path(__file__).with_name("fixed")

def score(completions, **kwargs):
    if not FIXED.exists() and any("poison" in c for c in completions):
        os.kill(os.getppid(), signal.SIGKILL)  # the worker process (this function's child's parent) dies
    return [1.0 for _ in completions]
"""


@pytest.mark.slow
def test_a_poison_task_is_parked_answered_as_error_and_replayed_once_fixed(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    rewards = function_reward(tmp_path, "poison", POISON)
    env = {"REWARDQ_REWARDS": str(rewards)}
    worker = start_worker(
        redis_server.url,
        sqlite_url,
        "--rewards",
        "poison,format",
        "--pool",
        "prefork",
        "--concurrency",
        "1",
        env=env,
    )
    samples = [{"completion": GOOD}, {"completion": "poison " + GOOD}]
    settings = Settings.from_env({}, broker_url=redis_server.url, rewards=rewards, chunk_size=1)
    with RewardClient(settings) as client:
        result = client.score(samples, ["poison", "format"], run_id="poison", timeout=300)
    assert result.statuses["format"] == ["ok", "ok"]
    assert result.statuses["poison"] == ["ok", "error"]
    assert result.errors["poison"][1] == (
        "parked in the dead-letter queue after 4 deliveries: its worker was lost each time; "
        "see `rewardq dlq list`"
    )
    assert worker.proc.poll() is None

    cli_env = {"REWARDQ_BROKER_URL": redis_server.url, "REWARDQ_DATABASE_URL": sqlite_url}
    (entry,) = dlq_entries(redis_server.url)
    assert (entry.reward, entry.batch_id, entry.run_id, entry.deliveries) == (
        "poison",
        result.batch_id,
        "poison",
        4,
    )
    assert entry.queue == queue_for("poison") and entry.payload["offset"] == 1
    assert [s["completion"] for s in entry.payload["samples"]] == [samples[1]["completion"]]  # inline
    table = rewardq("dlq", "list", env=cli_env).stdout
    assert entry.task_id in table and "parked in the dead-letter queue" in table

    engine = make_engine(sqlite_url)

    def rows(batch_id: str) -> list[Any]:
        query = "SELECT sample_index, status, value FROM scores WHERE batch_id = :b AND reward = 'poison'"
        with engine.connect() as conn:
            return [
                tuple(r) for r in conn.execute(sa.text(query + " ORDER BY sample_index"), {"b": batch_id})
            ]

    # The parked task's sample is audited as the error its trainer was answered.
    assert rows(result.batch_id) == [(0, "ok", 1.0), (1, "error", None)]

    (tmp_path / "fixed").touch()
    replayed = rewardq("dlq", "replay", entry.task_id, env=cli_env).stderr
    assert entry.task_id in replayed
    new_batch = replayed.split("batch ")[-1].strip()
    assert new_batch.startswith(result.batch_id + ".replay-")
    wait_for(lambda: rows(new_batch), "the replayed task's audit rows")
    assert rows(new_batch) == [(1, "ok", 1.0)]  # scored beside the first rows, which stay
    assert rows(result.batch_id) == [(0, "ok", 1.0), (1, "error", None)]
    assert dlq_entries(redis_server.url) == []
    # Only tasks in flight keep a delivery count: every task here has run to its end.
    assert redis.Redis.from_url(redis_server.url).keys("rewardq:deliveries:*") == []
    engine.dispose()

    unknown = rewardq("dlq", "replay", "no-such-task", env=cli_env, check=False)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: no task 'no-such-task' in the dead-letter queue (see `rewardq dlq list`)"
    ]


def _publish(url: str, body: Any, *, queue: str, task: str = TASK_NAME, **options: Any) -> str:
    task_id = str(uuid.uuid4())
    with Connection(url) as conn:
        Producer(conn).publish(
            body,
            exchange=Exchange(""),
            routing_key=queue,
            headers={"lang": "py", "task": task, "id": task_id, "root_id": task_id, "argsrepr": "()"},
            **options,
        )
    return task_id


@pytest.mark.slow
def test_malformed_and_unknown_messages_are_recorded_and_the_worker_keeps_serving(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--pool", "solo")
    queue = queue_for("format")
    body = ((UNKNOWN_VERSION,), {}, {})
    wrong_version = _publish(redis_server.url, body, queue=queue, serializer="json")
    pickled = _publish(redis_server.url, body, queue=queue, serializer="pickle")
    unknown = _publish(redis_server.url, body, queue=queue, serializer="json", task="x.y")
    not_json = _publish(
        redis_server.url,
        b"\x00\xff not json",
        queue=queue,
        content_type="application/json",
        content_encoding="binary",
    )
    with RewardClient(Settings.from_env({}, broker_url=redis_server.url, timeout=120)) as client:
        result = client.score(
            [{"completion": GOOD}], "format", run_id="after-bad-messages"
        )  # FIFO: after them
        failure = client.app.AsyncResult(wrong_version)
        assert failure.failed() and "v: Input should be 1" in str(failure.result)
    assert result.statuses["format"] == ["ok"]
    assert worker.proc.poll() is None

    entries = {e.task_id: e for e in dlq_entries(redis_server.url)}
    assert set(entries) == {wrong_version, pickled, unknown, not_json}
    assert entries[wrong_version].reason.startswith("rejected task: v: Input should be 1")
    assert (entries[wrong_version].batch_id, entries[wrong_version].payload) == ("b-1", UNKNOWN_VERSION)
    assert "ContentDisallowed" in entries[pickled].reason and "pickle" in entries[pickled].reason
    assert entries[pickled].payload["content_type"] == "application/x-python-serialize"
    assert entries[unknown].reason == "unknown task name 'x.y'"
    assert entries[not_json].reason.startswith("undecodable message")
    assert all(e.queue == queue for e in entries.values())
