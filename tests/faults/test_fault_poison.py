"""Scenario 5: a poison task, whose reward kills its pool process on every call: it is delivered a
bounded number of times (REWARDQ_MAX_DELIVERIES), parked in the dead-letter queue with its samples
answered ``error``, listed by ``rewardq dlq list`` and re-queued by ``rewardq dlq replay``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from rewardq import RewardClient
from rewardq.storage import make_engine
from tests.conftest import WorkerProcess
from tests.faults.conftest import (
    DeliveryCheck,
    FaultRedis,
    FaultRewards,
    Submitted,
    client_settings,
    queued_messages,
    samples,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

REWARDQ = str(Path(sys.executable).with_name("rewardq"))
DLQ = "rewardq:dlq"
MAX_DELIVERIES = 3


def rewardq(broker_url: str, database_url: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REWARDQ_")}
    env |= {"REWARDQ_BROKER_URL": broker_url, "REWARDQ_DATABASE_URL": database_url}
    done = subprocess.run([REWARDQ, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_poison_task_is_parked_after_bounded_deliveries_and_can_be_replayed(
    fault_redis: FaultRedis,
    sqlite_url: str,
    fault_rewards: FaultRewards,
    start_worker: Callable[..., WorkerProcess],
    delivery_check: DeliveryCheck,
) -> None:
    fault_rewards.poison_flag.write_text("")
    worker = start_worker(
        fault_redis.url,
        sqlite_url,
        *("--config", str(fault_rewards.config), "--rewards", "poison,format"),
        *("--pool", "prefork", "--concurrency", "1"),
        env=fault_rewards.env(REWARDQ_MAX_DELIVERIES=str(MAX_DELIVERIES)),
    )
    redis = fault_redis.client()
    with RewardClient(client_settings(fault_redis.url, sqlite_url, fault_rewards)) as client:
        started = time.monotonic()
        handle = client.submit(samples(4, "poison"), ["poison", "format"], run_id="faults-poison")
        result = handle.get(timeout=90)
        parked_after = time.monotonic() - started
        after = client.score(samples(2, "after-poison"), ["format"], run_id="faults-poison", timeout=60)

    poison_ids = [c.result.id for c in handle.chunks if c.reward == "poison"]
    assert result.statuses["poison"] == ["error"] * 4
    assert sorted(k.decode() for k in redis.hkeys(DLQ)) == sorted(poison_ids)
    for task_id in poison_ids:
        entry = json.loads(redis.hget(DLQ, task_id) or b"{}")
        # It ran (and killed its process) MAX_DELIVERIES times; the next delivery parked it.
        assert entry.get("deliveries") == MAX_DELIVERIES + 1, entry
    listing = rewardq(fault_redis.url, sqlite_url, "dlq", "list", "--json")
    assert all(task_id in listing for task_id in poison_ids), listing

    # Replayed once the reward is fixed: it runs, leaves the dead-letter queue, and the audit still
    # holds exactly one row per sample.
    fault_rewards.poison_flag.unlink()
    rewardq(fault_redis.url, sqlite_url, "dlq", "replay", poison_ids[0])
    deadline = time.monotonic() + 60
    while (redis.hexists(DLQ, poison_ids[0]) or queued_messages(redis)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not redis.hexists(DLQ, poison_ids[0])
    assert redis.hexists(DLQ, poison_ids[1])
    redis.hdel(DLQ, poison_ids[1])
    # The replay is scored as a new batch beside the parked rows (which stay `error`, as answered).
    engine = make_engine(sqlite_url)
    query = sa.text("SELECT status FROM scores WHERE batch_id LIKE :b AND reward = 'poison'")
    replayed: list[str] = []
    while not replayed and time.monotonic() < deadline:
        with engine.connect() as conn:
            replayed = [r[0] for r in conn.execute(query, {"b": handle.batch_id + ".replay-%"})]
        time.sleep(0.2)
    engine.dispose()
    assert replayed == ["ok"] * 2, replayed

    counts = delivery_check(
        "poison task",
        [
            Submitted(handle.batch_id, 4, ["poison", "format"], result, {"poison": {"error"}}),
            Submitted(after.batch_id, 2, ["format"], after),
        ],
        database_url=sqlite_url,
        redis_url=fault_redis.url,
        trials=len(poison_ids),
        recovery_s=round(parked_after, 1),
    )
    assert counts.clean, counts.problems
    assert worker.proc.poll() is None, worker.output()
