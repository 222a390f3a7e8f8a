"""The stall note of a rescoring run, against a real Redis: it says once why no result has come back, and
looks again while a lost worker's announcement is still live instead of going quiet for the whole stall."""

from __future__ import annotations

import logging
import time

import pytest
import redis

from rewardq.stalls import StallNote
from rewardq.wire.announcement import Announcement
from rewardq.wire.keys import UNACKED_KEY, WORKERS_INDEX, announcement_key
from rewardq.wire.settings import Settings
from tests.conftest import RedisServer


def _announce(client: redis.Redis, node: str, held: int, ttl_ms: int | None) -> None:
    entry = Announcement(node=node, rewards=["slow"], queues=["rewards.slow"], held=held, beat_at=time.time())
    client.set(announcement_key(node), entry.to_json(), px=ttl_ms)
    client.zadd(WORKERS_INDEX, {node: time.time()})


def test_a_lost_workers_tasks_are_reported_once_its_announcement_expires(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    _announce(client, "alive@host", held=0, ttl_ms=None)
    # The lost worker still looks live when the note first looks (2 beats), and holds the one task in flight.
    _announce(client, "lost@host", held=1, ttl_ms=2_600)
    client.hset(UNACKED_KEY, "tag-1", b"{}")
    settings = Settings(broker_url=redis_server.url, heartbeat=1)
    caplog.set_level(logging.WARNING, logger="rewardq.stalls")
    with StallNote(settings, ["slow"]):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not caplog.records:
            time.sleep(0.1)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said
    assert "waiting for the broker to redeliver 1 task of a lost worker" in said[0]
