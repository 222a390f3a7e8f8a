"""Scenario 3: the audit database cuts the worker's connection mid-write (``pg_terminate_backend``) or
is down for ~10 s while tasks persist: retried, written once, and no result is visible to the client
before its audit rows are committed (PostgreSQL's commit timestamps against when results appeared).

A row's commit time is its inserting transaction's, noted by a trigger (:func:`note_inserts`): the
sealer rewrites each row soon after (its chain columns), which gives the row a later ``xmin``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from rewardq import RewardClient, ScoreHandle
from tests.conftest import WorkerProcess
from tests.faults.conftest import (
    DeliveryCheck,
    FaultRedis,
    FaultRewards,
    PostgresCluster,
    Submitted,
    client_settings,
    samples,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

REWARDS = ["slow", "format"]
TERMINATION_BATCHES = 6
CUT_FOR_S = 1.0  # per batch, from its first chunk on: every write then meets a cut connection


_NOTE_INSERTS = (
    "CREATE TABLE inserted_by (batch_id text, reward text, sample_index int, xact xid8)",
    "CREATE FUNCTION note_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO inserted_by VALUES (NEW.batch_id, NEW.reward, NEW.sample_index, pg_current_xact_id()); "
    "RETURN NULL; END $$",
    "CREATE TRIGGER note_insert AFTER INSERT ON scores FOR EACH ROW EXECUTE FUNCTION note_insert()",
)


def note_inserts(database_url: str) -> None:
    """Record which transaction inserted each audit row (the store is migrated: a worker started)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            for statement in _NOTE_INSERTS:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


class ResultWatch:
    """Notes, from another thread, when each chunk's result first appears in the result backend."""

    def __init__(self, handle: ScoreHandle) -> None:
        self.handle = handle
        self.first_seen: dict[str, float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        backend = self.handle.chunks[0].result.backend
        while not self._done.is_set() and len(self.first_seen) < len(self.handle.chunks):
            for chunk in self.handle.chunks:
                task_id = chunk.result.id
                if task_id in self.first_seen:
                    continue
                if backend.get_task_meta(task_id, cache=False)["status"] in {"SUCCESS", "FAILURE"}:
                    self.first_seen[task_id] = time.time()
            time.sleep(0.02)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def early_results(self, database_url: str) -> list[str]:
        """Chunks whose result appeared before the last of their audit rows was committed."""
        engine = sa.create_engine(database_url)
        try:
            with engine.connect() as conn:
                committed = dict(
                    conn.execute(
                        sa.text(
                            "SELECT reward || ':' || sample_index,"
                            " extract(epoch FROM pg_xact_commit_timestamp(xid(xact)))"
                            " FROM inserted_by WHERE batch_id = :batch"
                        ),
                        {"batch": self.handle.batch_id},
                    ).all()
                )
        finally:
            engine.dispose()
        early = []
        for chunk in self.handle.chunks:
            seen = self.first_seen.get(chunk.result.id)
            keys = [f"{chunk.reward}:{i}" for i in range(chunk.offset, chunk.offset + chunk.size)]
            times = [committed.get(k) for k in keys]
            if seen is not None and (None in times or max(float(t) for t in times if t) > seen):
                early.append(f"{chunk.reward}@{chunk.offset}: result at {seen:.3f}, rows committed {times}")
        return early


def test_connections_terminated_mid_write_are_retried_and_written_once(
    fault_redis: FaultRedis,
    private_postgres: PostgresCluster,
    fault_rewards: FaultRewards,
    start_worker: Callable[..., WorkerProcess],
    delivery_check: DeliveryCheck,
) -> None:
    database_url = private_postgres.url
    worker = start_worker(
        fault_redis.url,
        database_url,
        *("--config", str(fault_rewards.config), "--rewards", "slow,format"),
        *("--pool", "prefork", "--concurrency", "2"),
        env=fault_rewards.env(delay=0.2),
    )
    note_inserts(database_url)
    submitted: list[Submitted] = []
    cuts = 0
    early: list[str] = []
    with RewardClient(client_settings(fault_redis.url, database_url, fault_rewards)) as client:
        for trial in range(TERMINATION_BATCHES):
            handle = client.submit(samples(8, f"cut{trial}"), REWARDS, run_id="faults-pg-cut", step=trial)
            watch = ResultWatch(handle)
            fault_rewards.wait_busy()
            cutting_until = time.monotonic() + CUT_FOR_S
            while time.monotonic() < cutting_until and not handle.ready():
                cuts += private_postgres.terminate_backends()
                time.sleep(0.05)
            result = handle.get(timeout=120)
            watch.stop()
            early += watch.early_results(database_url)
            submitted.append(Submitted(handle.batch_id, 8, REWARDS, result))

    counts = delivery_check(
        "pg_terminate_backend mid-write",
        submitted,
        database_url=database_url,
        redis_url=fault_redis.url,
        trials=cuts,
    )
    assert cuts > 0
    assert worker.proc.poll() is None, worker.output()
    assert counts.clean, counts.problems
    assert early == []


def test_database_down_for_10s_while_tasks_persist(
    fault_redis: FaultRedis,
    private_postgres: PostgresCluster,
    fault_rewards: FaultRewards,
    start_worker: Callable[..., WorkerProcess],
    delivery_check: DeliveryCheck,
) -> None:
    database_url = private_postgres.url
    worker = start_worker(
        fault_redis.url,
        database_url,
        *("--config", str(fault_rewards.config), "--rewards", "slow,format"),
        *("--pool", "prefork", "--concurrency", "2"),
        env=fault_rewards.env(delay=0.3),
    )
    note_inserts(database_url)
    with RewardClient(client_settings(fault_redis.url, database_url, fault_rewards)) as client:
        handle = client.submit(samples(12, "outage"), REWARDS, run_id="faults-pg-down")
        watch = ResultWatch(handle)
        fault_rewards.wait_busy()
        private_postgres.stop()
        time.sleep(10)
        private_postgres.start()
        restarted_at = time.monotonic()
        result = handle.get(timeout=120)
        recovery = time.monotonic() - restarted_at
        watch.stop()

    counts = delivery_check(
        "PostgreSQL down for 10 s",
        [Submitted(handle.batch_id, 12, REWARDS, result)],
        database_url=database_url,
        redis_url=fault_redis.url,
        trials=1,
        recovery_s=round(recovery, 1),
    )
    assert worker.proc.poll() is None, worker.output()
    assert counts.clean, counts.problems
    assert watch.early_results(database_url) == []
