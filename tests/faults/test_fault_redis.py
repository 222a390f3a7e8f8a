"""Scenario 2: Redis (append-only) restarted while two producer threads submit and workers score: the
workers stay up and resume consuming by themselves, every submitted sample comes back once, producers
that cannot submit fail with one line."""

from __future__ import annotations

import threading
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
RESTARTS_PER_POOL = 5
PRODUCERS = 2
# Short waits before a lost chunk is re-sent or a dead holder's task restored (defaults: 30 s, 60 s).
FAST_RECOVERY = {"REWARDQ_VISIBILITY_TIMEOUT": "6", "REWARDQ_HEARTBEAT": "1"}


class Producer(threading.Thread):
    """Submits batches one after another until told to stop; keeps what came back and what failed."""

    def __init__(self, name: str, client: RewardClient) -> None:
        super().__init__(name=name, daemon=True)
        self.client = client
        self.submitted: list[Submitted] = []
        self.refusals: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        count = 0
        while not self.stopping.is_set():
            count += 1
            try:
                handle = self.client.submit(
                    samples(6, f"{self.name}-{count}"), REWARDS, run_id="faults-redis"
                )
            except Exception as e:  # the broker was down: a refusal, not a submitted batch
                self.refusals.append(f"{type(e).__name__}: {e}")
                time.sleep(0.2)
                continue
            self.submitted.append(Submitted(handle.batch_id, 6, REWARDS, handle.get(timeout=120)))


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_redis_restarts_under_load(
    pool: str,
    fault_redis: FaultRedis,
    sqlite_url: str,
    fault_rewards: FaultRewards,
    start_worker: Callable[..., WorkerProcess],
    delivery_check: DeliveryCheck,
) -> None:
    worker = start_worker(
        fault_redis.url,
        sqlite_url,
        *("--config", str(fault_rewards.config), "--rewards", "slow,format", "--pool", pool),
        *("--concurrency", "2"),
        env=fault_rewards.env(delay=0.2, **FAST_RECOVERY),
    )
    settings = client_settings(
        fault_redis.url, sqlite_url, fault_rewards, visibility_timeout=6, heartbeat=1.0, resend_after=5.0
    )
    clients = [RewardClient(settings) for _ in range(PRODUCERS)]
    producers = [Producer(f"{pool}-p{i}", client) for i, client in enumerate(clients)]
    for producer in producers:
        producer.start()
    for _ in range(RESTARTS_PER_POOL):
        time.sleep(1.5)
        fault_redis.restart()
    restarted_at = time.monotonic()
    for producer in producers:
        producer.stopping.set()
    for producer in producers:
        producer.join(timeout=180)
    recovery = time.monotonic() - restarted_at
    with clients[0] as client:  # still consuming after the last restart
        after = client.submit(samples(4, f"{pool}-after"), REWARDS, run_id="faults-redis")
        submitted = [Submitted(after.batch_id, 4, REWARDS, after.get(timeout=60))]
    for client in clients[1:]:
        client.close()

    submitted += [s for p in producers for s in p.submitted]
    counts = delivery_check(
        f"Redis restarted under load ({pool})",
        submitted,
        database_url=sqlite_url,
        redis_url=fault_redis.url,
        trials=RESTARTS_PER_POOL,
        recovery_s=round(recovery, 1),
    )
    assert not any(p.is_alive() for p in producers)
    assert worker.proc.poll() is None, worker.output()
    assert counts.clean, counts.problems
    refusals = [r for p in producers for r in p.refusals]
    assert all("\n" not in r for r in refusals), refusals
