"""Samples stored once in the broker's Redis (rewardq.stored_samples), against a real redis-server and
`rewardq worker`: every reward's task of a chunk reads the same stored samples (a chunk of one reward
only when it is large), the handle deletes them once every reward has answered, and a task whose samples
are gone (expired before a worker took it) is parked with that reason, its samples answered ``error``,
while the worker goes on."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from rewardq import RewardClient, Settings
from rewardq.stored_samples import INLINE_MAX_BYTES
from rewardq.wire.keys import SAMPLES_PREFIX, samples_key
from tests.conftest import RedisServer, WorkerProcess
from tests.workers.test_cli import rewardq
from tests.workers.test_dlq import GOOD, dlq_entries

pytestmark = pytest.mark.slow

ROWS = [{"prompt": "p", "completion": GOOD if i % 2 else "no tags"} for i in range(5)]
# Chunks of one reward are stored only over INLINE_MAX_BYTES: a column makes every chunk of 2 that large.
LARGE = [row | {"notes": "n" * (INLINE_MAX_BYTES // 2)} for row in ROWS]


def test_each_chunk_is_stored_once_read_by_every_reward_and_deleted_once_answered(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(redis_server.url, sqlite_url, "--rewards", "format,repetition", "--concurrency", "1")
    settings = Settings.from_env({}, broker_url=redis_server.url, chunk_size=2)
    broker = redis.Redis.from_url(redis_server.url)
    with RewardClient(settings) as client:
        handle = client.submit(ROWS, ["format", "repetition"], run_id="stored")
        stored = sorted(k.decode() for k in broker.keys(f"{SAMPLES_PREFIX}*"))
        assert stored == sorted(samples_key(handle.batch_id, offset) for offset in (0, 2, 4))
        result = handle.get(timeout=120)
    assert result.statuses["format"] == ["ok"] * 5
    assert result.rewards["format"] == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert result.statuses["repetition"] == ["ok"] * 5
    assert broker.keys(f"{SAMPLES_PREFIX}*") == []


def test_a_task_whose_samples_are_gone_is_parked_and_answered_error_and_the_worker_goes_on(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    settings = Settings.from_env({}, broker_url=redis_server.url, chunk_size=3, serve_wait=0)
    broker = redis.Redis.from_url(redis_server.url)
    with RewardClient(settings) as client:
        handle = client.submit(LARGE, ["format"], run_id="expired")
        assert broker.delete(samples_key(handle.batch_id, 3)) == 1  # expired before a worker took it
        worker = start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--concurrency", "1")
        result = handle.get(timeout=120)
        after = client.score(ROWS, ["format"], run_id="expired", timeout=120)
    assert result.statuses["format"] == ["ok", "ok", "ok", "error", "error"]
    expected = f"its 2 samples are not in the broker under {samples_key(handle.batch_id, 3)}"
    assert expected in result.errors["format"][3]
    assert after.statuses["format"] == ["ok"] * 5 and worker.proc.poll() is None

    (entry,) = dlq_entries(redis_server.url)
    assert (entry.batch_id, entry.reward) == (handle.batch_id, "format") and expected in entry.reason
    env = {"REWARDQ_BROKER_URL": redis_server.url, "REWARDQ_DATABASE_URL": sqlite_url}
    replay = rewardq("dlq", "replay", entry.task_id, env=env, check=False)
    assert replay.returncode == 2
    assert replay.stderr.startswith(f"error: {entry.task_id} holds no samples (its 2 samples are not in")
