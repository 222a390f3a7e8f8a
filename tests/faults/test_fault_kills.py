"""Scenario 1: ``kill -9`` in the middle of batches, of prefork pool children, of solo and threads
worker main processes and of a reward-model worker holding coalesced tasks (a second worker running):
every sample scored once, nothing stranded."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rewardq import RewardClient, Settings
from tests.conftest import WorkerProcess
from tests.faults.conftest import (
    DeliveryCheck,
    FaultRedis,
    FaultRewards,
    Submitted,
    client_settings,
    kill9,
    pool_children,
    samples,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

REWARDS = ["slow", "format"]
POOL_CHILD_KILLS = 14
MAIN_KILLS_PER_POOL = 3
# A dead worker's tasks come back this long after its last heartbeat (the defaults are 60 s and 5 s).
FAST_RECOVERY = {"REWARDQ_VISIBILITY_TIMEOUT": "6", "REWARDQ_HEARTBEAT": "1"}


def test_kill9_of_prefork_pool_children_mid_batch(
    fault_redis: FaultRedis,
    sqlite_url: str,
    fault_rewards: FaultRewards,
    start_worker: Callable[..., WorkerProcess],
    delivery_check: DeliveryCheck,
) -> None:
    worker = start_worker(
        fault_redis.url,
        sqlite_url,
        *("--config", str(fault_rewards.config), "--rewards", "slow,format"),
        *("--pool", "prefork", "--concurrency", "2"),
        env=fault_rewards.env(delay=0.4),
    )
    submitted: list[Submitted] = []
    recovery = 0.0
    with RewardClient(client_settings(fault_redis.url, sqlite_url, fault_rewards)) as client:
        for trial in range(POOL_CHILD_KILLS):
            handle = client.submit(samples(8, f"child{trial}"), REWARDS, run_id="faults-kills", step=trial)
            kill9(fault_rewards.wait_busy(among=pool_children(worker.proc.pid)))
            killed_at = time.monotonic()
            result = handle.get(timeout=120)
            recovery = max(recovery, time.monotonic() - killed_at)
            submitted.append(Submitted(handle.batch_id, 8, REWARDS, result))

    counts = delivery_check(
        "kill -9 of prefork pool children",
        submitted,
        database_url=sqlite_url,
        redis_url=fault_redis.url,
        trials=POOL_CHILD_KILLS,
        recovery_s=round(recovery, 1),
    )
    assert worker.proc.poll() is None, worker.output()
    assert counts.clean, counts.problems


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_kill9_of_a_worker_main_process_mid_batch_another_worker_finishes_it(
    pool: str,
    fault_redis: FaultRedis,
    sqlite_url: str,
    fault_rewards: FaultRewards,
    start_worker: Callable[..., WorkerProcess],
    delivery_check: DeliveryCheck,
) -> None:
    args = ("--config", str(fault_rewards.config), "--rewards", "slow,format")
    env = fault_rewards.env(delay=0.4, **FAST_RECOVERY)
    start_worker(fault_redis.url, sqlite_url, *args, "--pool", "solo", env=env)  # the survivor
    submitted: list[Submitted] = []
    recovery = 0.0
    settings = client_settings(
        fault_redis.url, sqlite_url, fault_rewards, visibility_timeout=6, heartbeat=1.0
    )
    with RewardClient(settings) as client:
        for trial in range(MAIN_KILLS_PER_POOL):
            victim = start_worker(
                fault_redis.url, sqlite_url, *args, "--pool", pool, "--concurrency", "2", env=env
            )
            handle = client.submit(samples(8, f"{pool}{trial}"), REWARDS, run_id=f"faults-{pool}", step=trial)
            fault_rewards.wait_busy(among=[victim.proc.pid])
            kill9(victim.proc.pid)
            killed_at = time.monotonic()
            result = handle.get(timeout=90)
            recovery = max(recovery, time.monotonic() - killed_at)
            submitted.append(Submitted(handle.batch_id, 8, REWARDS, result))
            victim.stop()

    counts = delivery_check(
        f"kill -9 of a {pool} worker's main process",
        submitted,
        database_url=sqlite_url,
        redis_url=fault_redis.url,
        trials=MAIN_KILLS_PER_POOL,
        recovery_s=round(recovery, 1),
    )
    assert counts.clean, counts.problems


def test_with_default_settings_a_dead_solo_workers_batch_completes_within_90s(
    fault_redis: FaultRedis,
    sqlite_url: str,
    fault_rewards: FaultRewards,
    start_worker: Callable[..., WorkerProcess],
    delivery_check: DeliveryCheck,
) -> None:
    args = ("--config", str(fault_rewards.config), "--rewards", "slow,format", "--pool", "solo")
    victim = start_worker(fault_redis.url, sqlite_url, *args, env=fault_rewards.env(delay=0.4))
    start_worker(fault_redis.url, sqlite_url, *args, env=fault_rewards.env(delay=0.4))
    with RewardClient(client_settings(fault_redis.url, sqlite_url, fault_rewards)) as client:
        handle = client.submit(samples(8, "defaults"), REWARDS, run_id="faults-defaults")
        fault_rewards.wait_busy(among=[victim.proc.pid])
        kill9(victim.proc.pid)
        killed_at = time.monotonic()
        result = handle.get(timeout=90)  # missing scores after 90 s come back as `timeout`: lost
        recovery = time.monotonic() - killed_at

    counts = delivery_check(
        "kill -9 of a solo worker, default settings",
        [Submitted(handle.batch_id, 8, REWARDS, result)],
        database_url=sqlite_url,
        redis_url=fault_redis.url,
        trials=1,
        recovery_s=round(recovery, 1),
    )
    assert counts.clean, counts.problems


def test_kill9_of_a_model_worker_holding_coalesced_tasks_another_worker_finishes_them(
    tmp_path: Path,
    fault_redis: FaultRedis,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    delivery_check: DeliveryCheck,
) -> None:
    """A worker serving a reward model (the GPU worker's path: solo pool, tasks coalesced through
    celery-batches, many reserved at once) dies holding tasks; a second one scores them."""
    from tests.tinymodels import build_classifier

    model = build_classifier(tmp_path / "rm")
    config = tmp_path / "rm.toml"
    config.write_text(f'[rewards.rm]\nkind = "reward_model"\nmodel = "{model}"\n')
    args = ("--config", str(config), "--rewards", "rm")
    # Coalescing waits for more tasks than the batch holds, so the victim reserves every task first.
    env = {"REWARDQ_COALESCE_TASKS": "500", "REWARDQ_COALESCE_WAIT_MS": "60000", **FAST_RECOVERY}
    victim = start_worker(fault_redis.url, sqlite_url, *args, env=env)
    broker = fault_redis.client()
    settings = Settings.from_env(
        {}, broker_url=fault_redis.url, database_url=sqlite_url, rewards=config, chunk_size=4, timeout=120.0
    )
    with RewardClient(settings) as client:
        handle = client.submit(samples(64, "model"), ["rm"], run_id="faults-model")
        deadline = time.monotonic() + 60
        while broker.hlen("unacked") < len(handle.chunks) and time.monotonic() < deadline:
            time.sleep(0.05)
        held = broker.hlen("unacked")
        kill9(victim.proc.pid)
        killed_at = time.monotonic()
        start_worker(fault_redis.url, sqlite_url, *args, env={**env, "REWARDQ_COALESCE_WAIT_MS": "5"})
        result = handle.get(timeout=90)
        recovery = time.monotonic() - killed_at
        victim.stop()

    assert held == len(handle.chunks)  # the dead worker held every task of the batch
    counts = delivery_check(
        "kill -9 of a model worker holding coalesced tasks",
        [Submitted(handle.batch_id, 64, ["rm"], result)],
        database_url=sqlite_url,
        redis_url=fault_redis.url,
        trials=1,
        recovery_s=round(recovery, 1),
    )
    assert counts.clean, counts.problems
