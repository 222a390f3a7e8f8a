"""Re-sending chunks a broker lost (rewardq.resend), against a real redis-server and `rewardq worker`:
a message removed from its queue by hand (as a broker restart can lose one) is found missing and sent
again with its task id, scored once; a chunk that merely waits in its queue is left alone."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from rewardq import RewardClient, Settings
from rewardq.stored_samples import INLINE_MAX_BYTES
from rewardq.wire.keys import SAMPLES_PREFIX, priority_lists, samples_key
from rewardq.wire.schema import queue_for
from tests.conftest import RedisServer, WorkerProcess

pytestmark = pytest.mark.slow

ROWS = [{"prompt": "p", "completion": f"<think>step {i}</think>\n<answer>{i}</answer>"} for i in range(4)]


def _settings(redis_server: RedisServer, database_url: str, resend_after: float) -> Settings:
    return Settings.from_env(
        {},
        broker_url=redis_server.url,
        database_url=database_url,
        chunk_size=2,
        serve_wait=0,
        resend_after=resend_after,
    )


def _queued_task_ids(client: redis.Redis, reward: str) -> list[str]:
    """The task ids of the messages waiting in ``reward``'s queue lists (with repeats)."""
    ids = []
    for key in priority_lists(queue_for(reward)):
        ids += [json.loads(m)["headers"]["id"] for m in client.lrange(key, 0, -1)]
    return ids


def _remove_message(client: redis.Redis, reward: str, task_id: str) -> None:
    for key in priority_lists(queue_for(reward)):
        for message in client.lrange(key, 0, -1):
            if json.loads(message)["headers"]["id"] == task_id:
                assert client.lrem(key, 1, message) == 1
                return
    raise AssertionError(f"task {task_id} is not queued")


def _audit_counts(database_url: str, batch_id: str) -> list[Any]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            sql = (
                "SELECT sample_index, reward, count(*) FROM scores WHERE batch_id = :b "
                "GROUP BY sample_index, reward ORDER BY sample_index"
            )
            return list(conn.execute(sa.text(sql), {"b": batch_id}))
    finally:
        engine.dispose()


def _resends(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "rewardq.resend" and "again" in r.getMessage()
    ]


@pytest.mark.parametrize("padding", [0, INLINE_MAX_BYTES], ids=["inline", "stored samples"])
def test_a_lost_chunk_is_sent_again_and_scored_once(
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    caplog: pytest.LogCaptureFixture,
    padding: int,
) -> None:
    caplog.set_level(logging.WARNING, logger="rewardq.resend")
    broker = redis.Redis.from_url(redis_server.url)
    with RewardClient(_settings(redis_server, sqlite_url, resend_after=2)) as client:
        handle = client.submit([row | {"notes": "n" * padding} for row in ROWS], ["format"], run_id="resend")
        lost, kept = handle.task_ids
        _remove_message(broker, "format", lost)
        assert _queued_task_ids(broker, "format") == [kept]
        if padding:  # its stored samples are gone with the message, as in a restart: stored again
            assert broker.delete(samples_key(handle.batch_id, 0)) == 1
        start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--concurrency", "1")
        result = handle.get(timeout=120)
    assert result.statuses["format"] == ["ok"] * 4
    assert result.rewards["format"] == [1.0] * 4
    assert [(i, r, n) for i, r, n in _audit_counts(sqlite_url, handle.batch_id)] == [
        (i, "format", 1) for i in range(4)
    ]
    resent = _resends(caplog)
    assert len(resent) == 1 and lost in resent[0]
    assert broker.keys(f"{SAMPLES_PREFIX}*") == []  # every chunk answered: its samples deleted


def test_a_chunk_waiting_in_its_queue_is_not_sent_again(
    redis_server: RedisServer, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rewardq.resend")
    broker = redis.Redis.from_url(redis_server.url)
    with RewardClient(_settings(redis_server, sqlite_url, resend_after=0.5)) as client:
        handle = client.submit(ROWS, ["format"], run_id="resend")
        result = handle.get(timeout=4)  # no worker: every chunk stays queued, checked several times
    assert result.statuses["format"] == ["timeout"] * 4
    assert _resends(caplog) == []
    assert sorted(_queued_task_ids(broker, "format")) == sorted(handle.task_ids)


def test_a_reopened_handle_cannot_resend(redis_server: RedisServer, sqlite_url: str) -> None:
    with RewardClient(_settings(redis_server, sqlite_url, resend_after=1)) as client:
        handle = client.submit(ROWS, ["format"], run_id="resend")
        reopened = client.handle(handle.batch_id)
        assert all(c.sendable is not None for c in handle.chunks)
        assert all(c.sendable is None for c in reopened.chunks)
