"""Scenario 7: SIGTERM to a worker in the middle of a task: it finishes or hands back what it holds,
and a second worker scores the rest; nothing lost."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from rewardq import RewardClient
from tests.conftest import WorkerProcess
from tests.faults.conftest import (
    DeliveryCheck,
    FaultRedis,
    FaultRewards,
    Submitted,
    client_settings,
    samples,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

REWARDS = ["slow", "format"]


@pytest.mark.parametrize("pool", ["prefork", "solo", "threads"])
def test_sigterm_mid_task_finishes_or_hands_back(
    pool: str,
    fault_redis: FaultRedis,
    sqlite_url: str,
    fault_rewards: FaultRewards,
    start_worker: Callable[..., WorkerProcess],
    delivery_check: DeliveryCheck,
) -> None:
    args = ("--config", str(fault_rewards.config), "--rewards", "slow,format")
    env = fault_rewards.env(delay=1.0)
    stopping = start_worker(fault_redis.url, sqlite_url, *args, "--pool", pool, "--concurrency", "2", env=env)
    with RewardClient(client_settings(fault_redis.url, sqlite_url, fault_rewards)) as client:
        handle = client.submit(samples(8, f"term-{pool}"), REWARDS, run_id="faults-sigterm")
        fault_rewards.wait_busy()
        os.kill(stopping.proc.pid, signal.SIGTERM)
        stopped_at = time.monotonic()
        assert stopping.proc.wait(timeout=60) == 0, stopping.output()
        start_worker(fault_redis.url, sqlite_url, *args, "--pool", "solo", env=fault_rewards.env(delay=0.1))
        result = handle.get(timeout=120)
        recovery = time.monotonic() - stopped_at

    counts = delivery_check(
        f"SIGTERM mid-task ({pool})",
        [Submitted(handle.batch_id, 8, REWARDS, result)],
        database_url=sqlite_url,
        redis_url=fault_redis.url,
        trials=1,
        recovery_s=round(recovery, 1),
    )
    assert counts.clean, counts.problems
