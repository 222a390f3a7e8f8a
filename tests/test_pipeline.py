"""End to end through a real redis-server and `rewardq worker` processes into SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rewardq import RewardClient, Settings
from rewardq.broker import make_app
from rewardq.wire.schema import TASK_NAME, queue_for
from tests.conftest import RedisServer, WorkerProcess

pytestmark = pytest.mark.slow

CORRECT = "<think>2+2 is 4</think><answer>\\boxed{4}</answer>"
WRONG = "<think>guess</think><answer>\\boxed{5}</answer>"
UNFORMATTED = "The answer is \\boxed{4}."


def _rows(database_url: str, sql: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))
    finally:
        engine.dispose()


def _batch(n: int) -> list[dict[str, Any]]:
    kinds = [CORRECT, WRONG, UNFORMATTED]
    return [
        {
            "prompt": [{"role": "user", "content": f"q{i}"}],
            "completion": kinds[i % 3],
            "solution": "$4$",
            "id": f"s{i}",
        }
        for i in range(n)
    ]


def test_two_workers_share_a_queue_and_every_score_is_audited(
    redis_server: RedisServer, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(redis_server.url, database_url, "--rewards", "accuracy,format", "--concurrency", "1")
    start_worker(redis_server.url, database_url, "--rewards", "accuracy,format", "--concurrency", "1")
    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=database_url, chunk_size=10)
    samples = _batch(120)
    with RewardClient(settings) as client:
        result = client.score(samples, {"accuracy": 1.0, "format": 0.5}, run_id="run-1", step=3, timeout=120)

    assert result.statuses["format"] == ["ok"] * 120
    assert (
        result.statuses["accuracy"] == ["ok"] * 120
    )  # math-verify's signal timeouts work in prefork children
    assert result.rewards["accuracy"][:3] == [1.0, 0.0, 1.0]
    assert result.rewards["format"][:3] == [1.0, 1.0, 0.0]
    assert result.totals[:3] == [1.5, 0.5, 1.0]

    rows = _rows(
        database_url,
        "SELECT reward, count(*), count(DISTINCT worker_host) FROM scores "
        "WHERE run_id = 'run-1' AND step = 3 GROUP BY reward ORDER BY reward",
    )
    assert [(r[0], r[1]) for r in rows] == [("accuracy", 120), ("format", 120)]
    hosts = _rows(database_url, "SELECT count(DISTINCT worker_host) FROM scores")[0][0]
    assert hosts == 2, "both workers consumed the shared queues"
    [(value, status, sample_id, index)] = _rows(
        database_url,
        "SELECT value, status, sample_id, sample_index FROM scores "
        "WHERE reward = 'accuracy' AND sample_index = 1",
    )
    assert (value, status, sample_id, index) == (0.0, "ok", "s1", 1)


def test_worker_rejects_bad_samples_and_envelopes_without_crashing(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--concurrency", "1")
    app = make_app(Settings.from_env({}, broker_url=redis_server.url))
    batch = uuid.uuid4().hex
    payload = {
        "batch_id": batch,
        "run_id": "raw",
        "step": None,
        "reward": "format",
        "offset": 0,
        "samples": [{"completion": "<think>a</think><answer>b</answer>"}, {"completion": 7}, {"nope": 1}],
    }
    answer = app.send_task(TASK_NAME, args=[payload], queue=queue_for("format")).get(timeout=30)
    assert answer["statuses"] == ["ok", "error", "error"]
    assert "invalid sample: field 'completion'" in answer["errors"]["1"]

    bad_envelope = app.send_task(
        TASK_NAME, args=[{"reward": "format", "samples": []}], queue=queue_for("format")
    )
    with pytest.raises(Exception, match="rejected task") as info:
        bad_envelope.get(timeout=30)
    assert type(info.value).__name__ == "InvalidTask"
    del bad_envelope, info  # let the result unsubscribe while this test's redis-server is still up

    wrong_reward = dict(payload, batch_id=uuid.uuid4().hex, reward="not_served")
    answer = app.send_task(TASK_NAME, args=[wrong_reward], queue=queue_for("format")).get(timeout=30)
    assert answer["statuses"] == ["error"] * 3
    assert "unknown reward 'not_served'" in answer["errors"]["0"]

    # the same task delivered twice (as after a redelivery) writes its rows once
    app.send_task(TASK_NAME, args=[payload], queue=queue_for("format")).get(timeout=30)
    rows = _rows(
        sqlite_url,
        "SELECT status, count(*) FROM scores WHERE batch_id = :b GROUP BY status ORDER BY status",
        b=batch,
    )
    assert [tuple(r) for r in rows] == [("error", 2), ("ok", 1)]
    assert worker.proc.poll() is None, "the worker is still running"
    app.close()


def test_chunks_nobody_serves_come_back_as_timeouts(redis_server: RedisServer, sqlite_url: str) -> None:
    settings = Settings.from_env(  # serve_wait=0: submitted although no worker serves the reward
        {}, broker_url=redis_server.url, database_url=sqlite_url, chunk_size=2, serve_wait=0
    )
    with RewardClient(settings) as client:
        result = client.submit(_batch(3), ["format"], run_id="r").get(timeout=0.5)
    assert result.statuses["format"] == ["timeout"] * 3
    assert result.rewards["format"] == [None] * 3
    assert result.totals == [None] * 3
    assert "no result within 0.5s" in result.errors["format"][2]


def test_invalid_input_is_rejected_before_anything_is_enqueued(
    redis_server: RedisServer, sqlite_url: str
) -> None:
    import redis

    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url)
    with RewardClient(settings) as client, pytest.raises(Exception, match="sample 1, field 'completion'"):
        client.submit([{"completion": "ok"}, {"completion": 3}], ["format"], run_id="r")
    assert redis.Redis.from_url(redis_server.url).llen(queue_for("format")) == 0


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_accuracy_works_in_every_pool(
    pool: str, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    """math-verify's timeouts need a main thread: on every pool accuracy runs on its child process's."""
    start_worker(redis_server.url, sqlite_url, "--rewards", "accuracy", "--pool", pool, "--concurrency", "2")
    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, chunk_size=2)
    with RewardClient(settings) as client:
        result = client.score(_batch(6), "accuracy", run_id=f"pool-{pool}", timeout=120)
    assert result.statuses["accuracy"] == ["ok"] * 6
    assert result.rewards["accuracy"] == [1.0, 0.0, 1.0] * 2


CRASH_ONCE_PLUGIN = '''
import os
from pathlib import Path

from rewardq.workers.rewards.base import Reward, RewardOptions, Score


class CrashOnce(Reward):
    """Kills its worker process the first time it scores; scores 1.0 after that."""

    kind = "crash_once"
    runs_in = "process"  # kills the worker process itself, not a child of its own

    class Options(RewardOptions):
        marker: str

    def score(self, samples):
        marker = Path(self.options.marker)
        if not marker.exists():
            marker.write_text("crashed")
            os._exit(1)
        return [Score.ok(1.0) for _ in samples]


def register(kinds):
    kinds.add("crash_once", CrashOnce)
'''


def test_a_task_whose_worker_process_dies_is_redelivered_and_audited_once(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    (tmp_path / "crash_once.py").write_text(CRASH_ONCE_PLUGIN)
    config = tmp_path / "rewards.toml"
    config.write_text(
        'plugins = ["crash_once.py"]\n'
        f'[rewards.fragile]\nkind = "crash_once"\nmarker = "{tmp_path / "crashed"}"\n'
    )
    worker = start_worker(
        redis_server.url, sqlite_url, "--rewards", "fragile", "--concurrency", "1", "--config", str(config)
    )
    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, rewards=config)
    with RewardClient(settings) as client:
        result = client.score(_batch(4), "fragile", run_id="crash", timeout=60)
    assert (tmp_path / "crashed").exists(), "the first attempt killed its process"
    assert result.statuses["fragile"] == ["ok"] * 4
    assert _rows(sqlite_url, "SELECT count(*) FROM scores WHERE run_id = 'crash'")[0][0] == 4
    assert "WorkerLostError" in worker.output()


def test_an_audit_store_outage_is_retried_and_no_score_comes_back_unaudited(
    redis_server: RedisServer, postgres_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(redis_server.url, postgres_url, "--rewards", "format", "--concurrency", "1")
    database = sa.engine.make_url(postgres_url).database
    admin = sa.create_engine(postgres_url.replace(f"/{database}", "/postgres"), isolation_level="AUTOCOMMIT")

    def allow_connections(allow: bool) -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allow).lower()}')
            if not allow:  # and drop the worker's pooled connection
                conn.exec_driver_sql(
                    f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
                )

    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=postgres_url)
    try:
        allow_connections(False)
        with RewardClient(settings) as client:
            handle = client.submit(_batch(3), "format", run_id="outage")
            time.sleep(2.5)  # the first attempts fail while the database refuses connections
            allow_connections(True)
            result = handle.get(timeout=60)
    finally:
        allow_connections(True)
        admin.dispose()
    assert result.statuses["format"] == ["ok"] * 3
    [(count, attempts)] = _rows(
        postgres_url, "SELECT count(*), min(attempts) FROM scores WHERE run_id = 'outage'"
    )
    assert count == 3 and attempts == 1, "written once, by a retry of the write within one delivery"
    assert "audit write failed (attempt 1)" in worker.output()


def test_gathered_results_are_deleted_from_the_backend(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    import redis

    start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--concurrency", "1")
    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, chunk_size=2)
    with RewardClient(settings) as client:
        handle = client.submit(_batch(6), "format", run_id="forget")
        result = handle.get(timeout=60)
    assert result.statuses["format"] == ["ok"] * 6
    keys = redis.Redis.from_url(redis_server.url).keys("celery-task-meta-*")
    assert not keys, "the three chunk results were deleted once gathered"
