"""Non-blocking handles against a real redis-server and `rewardq worker` processes: submit now and
collect later, poll, read partially, re-open from another process, and the three deadline policies."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rewardq import (
    DeadlineExceeded,
    InvalidInputError,
    RewardClient,
    ScoreHandle,
    Settings,
    UnknownBatchError,
)
from tests.conftest import RedisServer, WorkerProcess

pytestmark = pytest.mark.slow

ROWS = [
    {"completion": "<think>2+2 is 4</think><answer>\\boxed{4}</answer>", "solution": "$4$"},
    {"completion": "<think>guess</think><answer>\\boxed{5}</answer>", "solution": "$4$"},
    {"completion": "The answer is \\boxed{4}.", "solution": "$4$"},
]
REWARDS = {"format": 1.0, "accuracy": 0.5}


def _settings(redis_server: RedisServer, database_url: str) -> Settings:
    # serve_wait=0: these tests submit before a worker for each reward is up
    return Settings.from_env(
        {}, broker_url=redis_server.url, database_url=database_url, chunk_size=2, serve_wait=0
    )


def _until(condition: Callable[[], bool]) -> None:
    """Poll until ``condition`` holds (the test's own timeout bounds it)."""
    while not condition():
        time.sleep(0.05)


def _chunks_ready(handle: ScoreHandle, reward: str) -> bool:
    return "timeout" not in handle.partial().statuses[reward]


def test_a_batch_is_submitted_at_once_and_collected_later(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    with RewardClient(_settings(redis_server, sqlite_url)) as client:
        step_1 = client.submit(ROWS, REWARDS, run_id="later", step=1)  # no worker yet: nothing blocks
        step_2 = client.submit(ROWS, REWARDS, run_id="later", step=2)
        assert not step_1.ready()
        early = step_1.partial()
        assert early.statuses == {"format": ["timeout"] * 3, "accuracy": ["timeout"] * 3}
        assert early.errors["format"][0].startswith("not ready yet")

        start_worker(redis_server.url, sqlite_url, "--rewards", "format,accuracy", "--concurrency", "1")
        first, second = step_1.get(timeout=60), step_2.get(timeout=60)
    for result in (first, second):
        assert result.rewards == {"format": [1.0, 1.0, 0.0], "accuracy": [1.0, 0.0, 1.0]}
        assert result.totals == [1.5, 1.0, 0.5]


def test_partial_reads_what_is_back_and_leaves_the_batch_to_collect(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--concurrency", "1")
    with RewardClient(_settings(redis_server, sqlite_url)) as client:
        handle = client.submit(ROWS, REWARDS, run_id="partial")
        _until(lambda: _chunks_ready(handle, "format"))
        assert not handle.ready()
        partial = handle.partial()
        assert partial.rewards["format"] == [1.0, 1.0, 0.0]
        assert partial.statuses["accuracy"] == ["timeout"] * 3
        assert partial.totals == [1.0, 1.0, 0.0]

        start_worker(redis_server.url, sqlite_url, "--rewards", "accuracy", "--concurrency", "1")
        whole = handle.get(timeout=60)
    assert whole.statuses == {"format": ["ok"] * 3, "accuracy": ["ok"] * 3}
    assert whole.totals == [1.5, 1.0, 0.5]


_READER = """
import json, sys
from rewardq import RewardClient, Settings
settings = Settings.from_env({}, broker_url=sys.argv[1], database_url=sys.argv[2])
with RewardClient(settings) as client:
    result = client.handle(sys.argv[3]).get(timeout=60)
print(json.dumps({"rewards": result.rewards, "totals": result.totals}))
"""


def test_a_handle_is_reopened_by_batch_id_in_another_process(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(redis_server.url, sqlite_url, "--rewards", "format,accuracy", "--concurrency", "1")
    with RewardClient(_settings(redis_server, sqlite_url)) as client:
        handle = client.submit(ROWS, REWARDS, run_id="reopen", step=4)
        done = subprocess.run(
            [sys.executable, "-c", _READER, redis_server.url, sqlite_url, handle.batch_id],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        read: dict[str, Any] = json.loads(done.stdout)
        assert read == {
            "rewards": {"format": [1.0, 1.0, 0.0], "accuracy": [1.0, 0.0, 1.0]},
            "totals": [1.5, 1.0, 0.5],
        }
        with pytest.raises(UnknownBatchError, match="already collected"):
            client.handle(handle.batch_id)  # the other process collected it, which drops it


def test_deadline_policy_partial_returns_what_is_ready_and_the_rest_as_timeout(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--concurrency", "1")
    with RewardClient(_settings(redis_server, sqlite_url)) as client:
        handle = client.submit(ROWS, REWARDS, run_id="deadline", deadline=0.5)
        _until(lambda: _chunks_ready(handle, "format"))
        result = handle.get(timeout=60)
    assert result.rewards["format"] == [1.0, 1.0, 0.0]
    assert result.statuses["accuracy"] == ["timeout"] * 3
    assert "by the batch's deadline" in result.errors["accuracy"][0]


def test_deadline_policy_fail_raises_and_keeps_the_batch(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--concurrency", "1")
    with RewardClient(_settings(redis_server, sqlite_url)) as client:
        handle = client.submit(ROWS, REWARDS, run_id="fail", deadline=0.5, on_deadline="fail")
        with pytest.raises(DeadlineExceeded, match="2 of 4 tasks") as raised:
            handle.get(timeout=60)
        assert isinstance(raised.value, TimeoutError)

        start_worker(redis_server.url, sqlite_url, "--rewards", "accuracy", "--concurrency", "1")
        reopened = client.handle(handle.batch_id)
        _until(reopened.ready)
        result = reopened.get()
    assert result.totals == [1.5, 1.0, 0.5]


def test_deadline_policy_wait_keeps_waiting_past_the_deadline(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--concurrency", "1")
    with RewardClient(_settings(redis_server, sqlite_url)) as client:
        handle = client.submit(ROWS, REWARDS, run_id="wait", deadline=0.2, on_deadline="wait")
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(handle.get(timeout=120)))
        waiter.start()
        _until(lambda: time.time() > (handle.deadline_at or 0) + 0.5)
        assert waiter.is_alive(), "still waiting for accuracy past the deadline"
        start_worker(redis_server.url, sqlite_url, "--rewards", "accuracy", "--concurrency", "1")
        waiter.join()
    assert got[0].totals == [1.5, 1.0, 0.5]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"deadline": 0}, "deadline"),
        ({"deadline": -1.0}, "deadline"),
        ({"on_deadline": "never"}, "on_deadline"),
    ],
)
def test_bad_deadlines_are_rejected_before_anything_is_enqueued(
    redis_server: RedisServer, sqlite_url: str, kwargs: dict[str, Any], field: str
) -> None:
    with RewardClient(_settings(redis_server, sqlite_url)) as client:
        with pytest.raises(InvalidInputError, match=f"field '{field}'"):
            client.submit(ROWS, REWARDS, run_id="bad", **kwargs)
        with pytest.raises(UnknownBatchError, match="never submitted"):
            client.handle("no-such-batch")
