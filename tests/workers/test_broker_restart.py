"""Broker restarts: a redis-server of the test's own, with its append-only file, is stopped and started
again on the same port while producers submit and real workers score. Workers stay up and resume on
their own, every batch completes with all samples ok, and the audit has one row per score. Also the
exact kombu path that used to stop workers ("Unrecoverable error: AttributeError ... 'hostname'")."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from kombu import Connection, Exchange, Queue
from redis.exceptions import ConnectionError as RedisConnectionError

from rewardq import RewardClient, Settings
from rewardq.workers.runtime.transport import TRANSPORT
from tests.conftest import RedisServer, WorkerProcess

pytestmark = pytest.mark.slow

# A reward slow enough (50 ms a sample) that tasks are in flight when Redis stops.
SLOW = """
import time


def slow(completions, **kwargs):
    time.sleep(0.05 * len(completions))
    return [1.0 for _ in completions]
"""
ROWS = [{"prompt": "p", "completion": f"c{i}"} for i in range(24)]
PRODUCERS = 2
BATCHES_EACH = 4
RESTARTS = 3


@pytest.fixture
def aof_redis(tmp_path: Path) -> Any:
    server = RedisServer(tmp_path / "aof-redis", appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _rewards(tmp_path: Path) -> Path:
    (tmp_path / "slow_reward.py").write_text(SLOW)
    path = tmp_path / "rewards.toml"
    path.write_text('[rewards.slow]\nkind = "function"\nfunction = "slow_reward:slow"\nconvention = "trl"\n')
    return path


def _duplicates_and_total(database_url: str) -> tuple[list[Any], int]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            duplicates = conn.execute(
                sa.text(
                    "SELECT batch_id, sample_index, reward, count(*) FROM scores "
                    "GROUP BY batch_id, sample_index, reward HAVING count(*) > 1"
                )
            )
            total = conn.execute(sa.text("SELECT count(*) FROM scores")).scalar_one()
            return list(duplicates), int(total)
    finally:
        engine.dispose()


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_workers_and_producers_ride_out_redis_restarts(
    tmp_path: Path,
    aof_redis: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    pool: str,
) -> None:
    rewards = _rewards(tmp_path)
    env = {"REWARDQ_REWARDS": str(rewards), "PYTHONPATH": str(tmp_path)}
    concurrency = ["--concurrency", "2"] if pool == "prefork" else []
    worker = start_worker(
        aof_redis.url, sqlite_url, "--rewards", "slow", "--pool", pool, *concurrency, env=env
    )
    settings = Settings.from_env(
        {}, broker_url=aof_redis.url, rewards=rewards, chunk_size=6, serve_wait=0, resend_after=5
    )
    statuses: list[list[str]] = []
    failures: list[BaseException] = []

    def produce(index: int) -> None:
        try:
            with RewardClient(settings) as client:
                for n in range(BATCHES_EACH):
                    result = client.score(
                        ROWS, ["slow"], run_id="restarts", step=index * 100 + n, timeout=240
                    )
                    statuses.append(result.statuses["slow"])
        except BaseException as e:  # reported below
            failures.append(e)

    producers = [threading.Thread(target=produce, args=(i,)) for i in range(PRODUCERS)]
    for thread in producers:
        thread.start()
    for _ in range(RESTARTS):
        time.sleep(1.0)  # batches are being submitted and scored
        aof_redis.stop()
        time.sleep(0.5)
        aof_redis.start()
    for thread in producers:
        thread.join()

    assert failures == []
    assert statuses == [["ok"] * len(ROWS)] * (PRODUCERS * BATCHES_EACH)
    assert worker.proc.poll() is None, worker.output()
    assert "Unrecoverable error" not in worker.output()
    with RewardClient(settings) as client:  # the worker consumes again
        after = client.score(ROWS, ["slow"], run_id="restarts", step=999, timeout=240)
    assert after.statuses["slow"] == ["ok"] * len(ROWS)
    duplicates, total = _duplicates_and_total(sqlite_url)
    assert duplicates == []
    assert total == (PRODUCERS * BATCHES_EACH + 1) * len(ROWS)


def test_a_channel_of_a_closed_connection_fails_with_a_connection_error(aof_redis: RedisServer) -> None:
    """kombu's path: a delivery whose ack failed while Redis was down stays with its channel; Celery's
    consumer then closes the lost connection (``collect`` detaches the transport) and the channel, which
    drops its pools and restores its deliveries, building a new pool from the detached transport."""
    errors: dict[str, type[BaseException]] = {}
    for name, transport in (("kombu", None), ("rewardq", TRANSPORT)):
        conn = Connection(aof_redis.url, transport=transport)
        channel = conn.channel()
        queue = Queue("q", Exchange("q"), "q")
        queue(channel).declare()
        conn.Producer().publish({"n": 1}, exchange="q", routing_key="q")
        message = queue(channel).get(no_ack=False)
        assert message is not None
        aof_redis.stop()
        with pytest.raises(RedisConnectionError):
            message.ack()  # "Couldn't ack"
        conn.collect()
        aof_redis.start()
        channel._disconnect_pools()  # as Channel.close does before it restores
        try:
            channel.qos.restore_unacked()
        except Exception as e:
            errors[name] = type(e)
    assert errors == {"kombu": AttributeError, "rewardq": RedisConnectionError}
    assert issubclass(RedisConnectionError, Connection(aof_redis.url).connection_errors)
