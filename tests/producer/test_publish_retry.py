"""Producers and a broker restart: a submit made while Redis restarts is sent once it is back; one made
while it stays down fails, once the retries are spent, with one clear BrokerUnavailable line."""

from __future__ import annotations

import gc
import json
import threading
from pathlib import Path

import pytest
import redis

from rewardq import RewardClient, Settings
from rewardq.broker import PUBLISH_RETRY_POLICY
from rewardq.wire.errors import BrokerUnavailable
from rewardq.wire.keys import priority_lists
from rewardq.wire.schema import queue_for
from tests.conftest import RedisServer

pytestmark = pytest.mark.slow

ROWS = [{"prompt": "p", "completion": "<think>a</think>\n<answer>b</answer>"}]


def test_a_submit_during_a_restart_is_sent_once_redis_is_back(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    try:
        with RewardClient(Settings.from_env({}, broker_url=server.url, serve_wait=0)) as client:
            assert client.app is not None  # connected and checked before the restart
            server.stop()
            restart = threading.Timer(2.0, server.start)
            restart.start()
            task_ids = client.submit(ROWS, ["format"], run_id="publish").task_ids
            restart.join()
        queued = redis.Redis.from_url(server.url).lrange(priority_lists(queue_for("format"))[0], 0, -1)
        assert [json.loads(m)["headers"]["id"] for m in queued] == task_ids
    finally:
        gc.collect()  # the handle's results unsubscribe through Redis when collected: while it is up
        server.stop()


def test_a_broker_that_stays_down_fails_the_submit_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PUBLISH_RETRY_POLICY, "max_retries", 2)
    broker = RedisServer(tmp_path / "broker")
    results = RedisServer(tmp_path / "results")
    broker.start()
    results.start()
    try:
        settings = Settings.from_env({}, broker_url=broker.url, result_backend=results.url, serve_wait=0)
        with RewardClient(settings) as client:
            assert client.app is not None
            broker.stop()
            with pytest.raises(BrokerUnavailable) as failure:
                client.submit(ROWS, ["format"], run_id="publish")
        text = str(failure.value)
        assert text.startswith(f"cannot publish to the broker redis://127.0.0.1:{broker.port}/0")
        assert "Connection refused" in text and "\n" not in text
    finally:
        broker.stop()
        results.stop()
