"""Worker liveness through real `rewardq worker` processes and a redis-server of the test's own: a
killed worker's tasks are taken over by a live worker within the trainer's patience, and a task that
outlives the visibility timeout is not redelivered while its worker beats."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from rewardq import RewardClient, Settings
from rewardq.wire.keys import WORKERS_INDEX, announcement_key
from tests.conftest import RedisServer, WorkerProcess

pytestmark = pytest.mark.slow

SLOW_FUNCTION = """
import os
import time
from pathlib import Path


def score(completions, **kwargs):
    with Path({calls!r}).open("a") as calls:
        calls.write(f"{{os.getppid()}} {{len(completions)}}\\n")  # the worker process: the child's parent
    time.sleep({seconds})
    return [1.0 for _ in completions]
"""


def slow_reward(directory: Path, seconds: float) -> tuple[Path, Path]:
    """A rewards file serving ``slow``: a function that logs each call (worker pid, samples) to the returned
    calls file, then sleeps ``seconds``."""
    calls = directory / "calls.log"
    (directory / "slow.py").write_text(SLOW_FUNCTION.format(calls=str(calls), seconds=seconds))
    config = directory / "rewards.toml"
    config.write_text('[rewards.slow]\nkind = "function"\nfunction = "slow.py:score"\nconvention = "trl"\n')
    return config, calls


def calls_made(calls: Path) -> list[str]:
    return calls.read_text().splitlines() if calls.exists() else []


def _until(condition: Callable[[], bool]) -> None:
    """Poll until ``condition`` holds (the test's own timeout bounds it)."""
    while not condition():
        time.sleep(0.05)


def _rows(database_url: str, sql: str) -> list[Any]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


ROWS = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(6)]


def test_a_killed_workers_batch_is_completed_by_another_worker_with_default_settings(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    config, calls = slow_reward(tmp_path, seconds=2)
    env = {"REWARDQ_REWARDS": str(config)}
    doomed = start_worker(redis_server.url, sqlite_url, "--rewards", "slow", "--pool", "solo", env=env)
    settings = Settings.from_env(
        {}, broker_url=redis_server.url, database_url=sqlite_url, rewards=config, chunk_size=2
    )
    with RewardClient(settings) as client:
        handle = client.submit(ROWS, "slow", run_id="killed")
        _until(lambda: bool(calls_made(calls)))  # the first worker is scoring a chunk
        doomed.kill()  # SIGKILL: no shutdown, no hand-back; its task stays in Redis' unacked set
        start_worker(redis_server.url, sqlite_url, "--rewards", "slow", "--pool", "solo", env=env)
        result = handle.get(timeout=90)
    assert result.statuses["slow"] == ["ok"] * 6
    rows = _rows(
        sqlite_url,
        "SELECT sample_index, reward, count(*) FROM scores WHERE run_id = 'killed' "
        "GROUP BY sample_index, reward ORDER BY sample_index",
    )
    assert rows == [(i, "slow", 1) for i in range(6)]
    pids = [line.split()[0] for line in calls_made(calls)]
    assert pids[0] == str(doomed.proc.pid) and len(pids) == 4, "the killed chunk was scored again, once"


def test_a_task_longer_than_the_visibility_timeout_is_not_redelivered_while_its_worker_lives(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    config, calls = slow_reward(tmp_path, seconds=12)
    env = {"REWARDQ_REWARDS": str(config), "REWARDQ_VISIBILITY_TIMEOUT": "6", "REWARDQ_HEARTBEAT": "1"}
    workers = [
        start_worker(redis_server.url, sqlite_url, "--rewards", "slow", "--pool", "solo", env=env)
        for _ in range(2)
    ]  # while one scores, the other is idle and restores every task whose worker stopped beating
    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, rewards=config)
    with RewardClient(settings) as client:
        result = client.submit(ROWS[:1], "slow", run_id="long").get(timeout=90)
    assert result.statuses["slow"] == ["ok"]
    assert len(calls_made(calls)) == 1, "scored once, never redelivered to the idle worker"
    assert all(w.proc.poll() is None for w in workers)


def test_a_worker_announces_what_it_serves_and_withdraws_at_shutdown(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(
        redis_server.url,
        sqlite_url,
        "--rewards",
        "format,accuracy",
        "--pool",
        "threads",
        "--concurrency",
        "2",
    )
    broker = redis.Redis.from_url(redis_server.url)
    _until(lambda: bool(broker.keys(announcement_key("*"))))
    [key] = broker.keys(announcement_key("*"))
    _until(lambda: "starting" not in json.loads(broker.get(key)))  # its claim, replaced by the first beat
    entry = json.loads(broker.get(key))
    assert key.decode() == announcement_key(entry["node"])
    assert entry["pid"] == worker.proc.pid and entry["node"].startswith(f"rewardq-cpu-{worker.proc.pid}@")
    assert (entry["rewards"], entry["queues"]) == (
        ["format", "accuracy"],
        ["rewards.format", "rewards.accuracy"],
    )
    assert (entry["pool"], entry["concurrency"], entry["gpu"], entry["held"]) == ("threads", 2, None, 0)
    assert {r: fp.split("@")[0] for r, fp in entry["fingerprints"].items()} == {
        "format": "format",
        "accuracy": "accuracy",
    }
    assert 0 < broker.pttl(key) <= 3 * 5000, "expires three heartbeats after the last one"
    assert broker.zrange(WORKERS_INDEX, 0, -1) == [key.removeprefix(announcement_key("").encode())]
    worker.stop()
    assert broker.keys(announcement_key("*")) == [] and broker.zcard(WORKERS_INDEX) == 0
