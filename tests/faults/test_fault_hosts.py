"""Workers on three "hosts" (network namespaces, tests/netns_hosts.py) reaching Redis and PostgreSQL over
their own links; one host's link is cut in the middle of a batch: its task comes back to the other hosts,
nothing is lost or doubled, and the host scores tasks again once its link returns."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from rewardq import RewardClient
from rewardq.wire.keys import WORKERS_INDEX, announcement_key
from tests.conftest import RedisServer, WorkerProcess
from tests.faults.conftest import (
    DeliveryCheck,
    FaultRewards,
    PostgresCluster,
    Submitted,
    client_settings,
    samples,
)
from tests.netns_hosts import Hosts, why_not

pytestmark = [pytest.mark.faults, pytest.mark.slow]

HOSTS = 3
# A lost host's tasks come back this long after its last heartbeat (the defaults are 60 s and 5 s).
FAST_RECOVERY = {"REWARDQ_VISIBILITY_TIMEOUT": "6", "REWARDQ_HEARTBEAT": "1"}
REWARDS = ["slow"]


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    reason = why_not()
    if reason is not None:
        pytest.skip(f"cannot make network namespaces here: {reason}")
    made = Hosts(HOSTS)
    try:
        yield made
    finally:
        made.destroy()


@pytest.fixture
def hosts_redis(hosts: Hosts, tmp_path: Path) -> Iterator[RedisServer]:
    """The test's own redis-server, on 127.0.0.1 (the producer) and on every host's link."""
    server = RedisServer(tmp_path / "redis", bind=("127.0.0.1", *hosts.gateways))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hosts_postgres(hosts: Hosts) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of the test's own, on 127.0.0.1 and every host's link, trusting their subnet."""
    cluster = PostgresCluster(listen=("127.0.0.1", *hosts.gateways), trust=hosts.network)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


def node_of(client: redis.Redis, pid: int) -> str:
    """The Celery node name of the worker whose main process is ``pid`` (from the workers' index)."""
    for member in client.zrange(WORKERS_INDEX, 0, -1):
        node = member.decode()
        if f"-{pid}@" in node:
            return node
    raise AssertionError(f"no worker with pid {pid} in {WORKERS_INDEX}")


def wait_beat_after(client: redis.Redis, node: str, since: float, timeout: float = 60.0) -> float:
    """Until ``node`` has announced itself (its heartbeat reached Redis) after the wall time ``since``;
    how long after ``since`` that beat was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = client.get(announcement_key(node))
        if raw is not None and (beat := json.loads(raw).get("beat_at") or 0) > since:
            return float(beat) - since
        time.sleep(0.2)
    raise AssertionError(f"{node} did not beat again within {timeout}s of its link's return")


def rows_by_worker(database_url: str, batch_id: str) -> list[tuple[str, int]]:
    """(worker_host, attempts) of every audit row of a batch."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT worker_host, attempts FROM scores WHERE batch_id = :b"), {"b": batch_id}
            ).all()
    finally:
        engine.dispose()
    return [(str(w), int(a)) for w, a in found]


def test_a_host_cut_off_mid_batch_hands_its_task_to_the_others_and_rejoins(
    hosts: Hosts,
    hosts_redis: RedisServer,
    hosts_postgres: PostgresCluster,
    fault_rewards: FaultRewards,
    start_worker: Callable[..., WorkerProcess],
    delivery_check: DeliveryCheck,
) -> None:
    args = ("--config", str(fault_rewards.config), "--rewards", "slow", "--pool", "solo")
    workers = [
        start_worker(
            f"redis://{hosts.gateway(i)}:{hosts_redis.port}/0",
            hosts_postgres.url_at(hosts.gateway(i)),
            *args,
            env=fault_rewards.env(delay=0.5, **FAST_RECOVERY),
            prefix=hosts.exec_prefix(i),
        )
        for i in range(HOSTS)
    ]
    broker = redis.Redis.from_url(hosts_redis.url)
    nodes = [node_of(broker, w.proc.pid) for w in workers]
    cut = 0
    settings = client_settings(
        hosts_redis.url, hosts_postgres.url, fault_rewards, visibility_timeout=6, heartbeat=1.0
    )
    with RewardClient(settings) as client:
        first = client.submit(samples(24, "cut"), REWARDS, run_id="faults-hosts", step=0)  # 12 tasks
        fault_rewards.wait_busy(among=[workers[cut].proc.pid])
        hosts.cut(cut)
        cut_at = time.monotonic()
        first_result = first.get(timeout=90)  # missing scores come back as `timeout`: counted lost
        recovery = time.monotonic() - cut_at
        # Every score came back while the cut host could reach neither Redis nor PostgreSQL.
        assert first_result.statuses["slow"] == ["ok"] * 24
        taken_over = [(w, a) for w, a in rows_by_worker(hosts_postgres.url, first.batch_id) if a > 1]
        assert taken_over and all(w != nodes[cut] for w, _ in taken_over), taken_over

        restored_wall = time.time()
        hosts.restore(cut)
        rejoined_s = wait_beat_after(broker, nodes[cut], restored_wall)
        print(
            f"recovered {recovery:.1f} s after the cut; beat again {rejoined_s:.1f} s after the link returned"
        )
        second = client.submit(samples(48, "rejoined"), REWARDS, run_id="faults-hosts", step=1)
        second_result = second.get(timeout=90)

    scorers = {w for w, _ in rows_by_worker(hosts_postgres.url, second.batch_id)}
    assert nodes[cut] in scorers, (scorers, workers[cut].output()[-3000:])
    assert all(w.proc.poll() is None for w in workers), [w.output()[-2000:] for w in workers]
    counts = delivery_check(
        "a worker host's link cut mid-batch",
        [
            Submitted(first.batch_id, 24, REWARDS, first_result),
            Submitted(second.batch_id, 48, REWARDS, second_result),
        ],
        database_url=hosts_postgres.url,
        redis_url=hosts_redis.url,
        trials=1,
        recovery_s=round(recovery, 1),
    )
    assert counts.clean, counts.problems
