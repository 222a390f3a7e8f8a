"""A task past its hard time limit (a prefork worker kills its process) is answered and audited as
``timeout``, its samples inline or stored in Redis, and the worker keeps serving."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from rewardq import RewardClient, Settings
from rewardq.storage import make_engine, upgrade
from rewardq.stored_samples import INLINE_MAX_BYTES
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.time_limit import timed_out
from tests.conftest import RedisServer, WorkerProcess
from tests.workers.test_dlq import function_reward

SLOW = """
import time

def score(completions, **kwargs):
    if any("slow" in c for c in completions):
        time.sleep(10)
    return [1.0 for _ in completions]
"""


@pytest.mark.slow
@pytest.mark.parametrize("padding", [0, INLINE_MAX_BYTES], ids=["inline", "stored samples"])
def test_a_task_past_its_hard_time_limit_is_recorded_as_timeout(
    tmp_path: Path,
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    padding: int,
) -> None:
    rewards = function_reward(tmp_path, "slow", SLOW)
    env = {"REWARDQ_REWARDS": str(rewards), "REWARDQ_TASK_TIME_LIMIT": "2"}
    worker = start_worker(
        redis_server.url, sqlite_url, "--rewards", "slow", "--pool", "prefork", "--concurrency", "1", env=env
    )
    settings = Settings.from_env({}, broker_url=redis_server.url, rewards=rewards, timeout=120)
    samples = [{"completion": "slow", "notes": "n" * padding}, {"completion": "fine"}]
    with RewardClient(settings) as client:
        result = client.score(samples, "slow", run_id="limits")
        assert result.statuses["slow"] == ["timeout", "timeout"]
        assert result.errors["slow"][0] == "task exceeded the hard time limit of 2s"
        after = client.score([{"completion": "fine"}], "slow", run_id="limits")  # the worker keeps serving
    assert after.statuses["slow"] == ["ok"]
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT sample_index, status, error FROM scores WHERE batch_id = :b ORDER BY sample_index"),
            {"b": result.batch_id},
        ).all()
    engine.dispose()
    assert [(r.sample_index, r.status) for r in rows] == [(0, "timeout"), (1, "timeout")]
    assert rows[0].error == "task exceeded the hard time limit of 2s"
    assert worker.proc.poll() is None
    assert "Hard time limit (2" in worker.output()


def test_an_invalid_sample_keeps_its_own_error_when_its_task_times_out(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    runtime = WorkerRuntime(Settings.from_env({}, database_url=sqlite_url), RewardsConfig.load(None))
    samples = [{"completion": "a"}, {"completion": "b", "columns": {"id": "y" * 600}}]
    payload = {"batch_id": "b-1", "run_id": "limits", "reward": "format", "samples": samples}
    request = SimpleNamespace(args=[payload], kwargs={}, id="t-1", hostname="w@h")
    try:
        result = timed_out(runtime, request, 7.0)  # type: ignore[arg-type]
    finally:
        runtime.close()
    assert result["statuses"] == ["timeout", "error"]
    assert result["errors"]["0"] == "task exceeded the hard time limit of 7s"
    assert "over the audit store's limit" in result["errors"]["1"]
