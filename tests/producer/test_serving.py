"""A reward no live worker serves is refused before anything is enqueued, naming the reward and how to
start a worker for it; a served one passes (real redis-server, real worker announcements)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import redis

from rewardq import RewardClient, RewardqError, Settings
from rewardq.serving import ServingCheck
from rewardq.wire.errors import UnservedRewardError
from rewardq.wire.keys import WORKERS_INDEX, announcement_key
from rewardq.wire.schema import queue_for
from tests.conftest import RedisServer, WorkerProcess

ROWS = [{"prompt": "q", "completion": "<think>t</think><answer>a</answer>"}]


def test_an_unserved_reward_is_refused_and_nothing_is_enqueued(redis_server: RedisServer) -> None:
    settings = Settings.from_env({}, broker_url=redis_server.url, serve_wait=1)
    with RewardClient(settings) as client, pytest.raises(UnservedRewardError) as info:
        client.submit(ROWS, {"format": 1.0, "accuracy": 1.0}, run_id="r")
    message = str(info.value)
    assert isinstance(info.value, RewardqError) and "\n" not in message
    assert "'format', 'accuracy'" in message and "rewardq worker --rewards format,accuracy" in message
    broker = redis.Redis.from_url(redis_server.url)
    assert broker.llen(queue_for("format")) == broker.llen(queue_for("accuracy")) == 0


def test_only_the_rewards_without_a_live_worker_are_named(redis_server: RedisServer) -> None:
    broker = redis.Redis.from_url(redis_server.url)
    announcement = {"node": "other@host", "rewards": ["format"]}
    broker.set(announcement_key("other@host"), json.dumps(announcement), ex=60)
    broker.zadd(WORKERS_INDEX, {"other@host": 0, "expired@host": 0})  # the second one's key is gone
    check = ServingCheck(Settings.from_env({}, broker_url=redis_server.url, serve_wait=0.5))
    try:
        check.require(["format"])
        with pytest.raises(UnservedRewardError) as info:
            check.require(["format", "accuracy"])
    finally:
        check.close()
    assert info.value.rewards == ["accuracy"]


@pytest.mark.slow
def test_a_served_reward_passes_and_is_scored(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--pool", "solo")
    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, serve_wait=1)
    with RewardClient(settings) as client:
        first = client.score(ROWS, "format", run_id="served", timeout=60)
        second = client.score(ROWS, "format", run_id="served", timeout=60)  # answered from the check's cache
    assert first.statuses == second.statuses == {"format": ["ok"]}


def test_the_wait_is_said_once_and_counts_from_the_time_given(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import time

    check = ServingCheck(Settings.from_env({}, broker_url=redis_server.url, serve_wait=1))
    try:
        with caplog.at_level(logging.WARNING, logger="rewardq.serving"), pytest.raises(UnservedRewardError):
            check.require(["format", "accuracy"])
        said = [r.getMessage() for r in caplog.records if r.name == "rewardq.serving"]
        assert said == ["waiting up to 1s for a worker serving: format, accuracy"]
        caplog.clear()
        # A command that started serve_wait ago (its set-up took that long) has no wait left: it is
        # refused at the first look, without a word about waiting.
        with caplog.at_level(logging.WARNING, logger="rewardq.serving"), pytest.raises(UnservedRewardError):
            check.require(["format"], since=time.monotonic() - 1)
        assert not [r for r in caplog.records if r.name == "rewardq.serving"]
    finally:
        check.close()
