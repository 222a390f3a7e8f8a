"""An audit-store outage retries the write, never the reward: the scores are kept while the store is
locked or away, the rows are written once, and the answer is ``ok``. A permanent error (the store
refuses the write) fails the task at once, without retries."""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from rewardq import RewardClient, Settings
from rewardq.storage import make_engine, upgrade
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.task import score_payload
from tests.conftest import RedisServer, WorkerProcess
from tests.workers.test_dlq import function_reward, wait_for

COUNTING = """
from pathlib import Path

CALLS = Path(__file__).with_name("calls")

def score(completions, **kwargs):
    with CALLS.open("a") as f:
        f.write(f"{len(completions)}\\n")
    return [0.5 for _ in completions]
"""


def _calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().split() if path.exists() else []


def _rows(database_url: str, batch: str) -> list[Any]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            query = "SELECT sample_index, status, value FROM scores WHERE batch_id = :b ORDER BY sample_index"
            return [tuple(r) for r in conn.execute(text(query), {"b": batch})]
    finally:
        engine.dispose()


def _locked(database_url: str, release: threading.Event) -> threading.Thread:
    """Hold the SQLite audit file locked for writing (BEGIN EXCLUSIVE) until ``release`` is set."""
    locked = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=60)
        conn.isolation_level = None
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(120)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    locked.wait(30)
    return thread


def test_a_locked_store_retries_the_transaction_with_the_scores_kept(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A short busy timeout makes the lock fail the write (a transient error) instead of waiting it out.
    monkeypatch.setattr(
        "rewardq.storage.make_engine", functools.partial(make_engine, sqlite_busy_timeout_s=0.3)
    )
    upgrade(sqlite_url)
    rewards = function_reward(tmp_path, "counting", COUNTING)
    runtime = WorkerRuntime(Settings.from_env({}, database_url=sqlite_url), RewardsConfig.load(rewards))
    payload = {
        "batch_id": uuid.uuid4().hex,
        "run_id": "outage",
        "reward": "counting",
        "samples": [{"completion": "a"}],
    }
    release = threading.Event()
    holder = _locked(sqlite_url, release)
    threading.Timer(2.5, release.set).start()
    try:
        with caplog.at_level(logging.WARNING, logger="rewardq.storage.record"):
            result = score_payload(runtime, payload)
    finally:
        release.set()
        holder.join()
        runtime.close()
    assert result["statuses"] == ["ok"] and result["values"] == [0.5]
    assert _calls(tmp_path) == ["1"]  # the reward was called once
    assert _rows(sqlite_url, payload["batch_id"]) == [(0, "ok", 0.5)]
    retries = [r.getMessage() for r in caplog.records if "audit write failed" in r.getMessage()]
    assert retries and "database is locked" in retries[0], caplog.text


@pytest.mark.slow
def test_a_worker_rides_out_a_locked_store_without_scoring_again(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    rewards = function_reward(tmp_path, "counting", COUNTING)
    worker = start_worker(
        redis_server.url,
        sqlite_url,
        "--rewards",
        "counting",
        "--pool",
        "solo",
        env={"REWARDQ_REWARDS": str(rewards)},
    )
    settings = Settings.from_env({}, broker_url=redis_server.url, rewards=rewards, timeout=120)
    release = threading.Event()
    holder = _locked(sqlite_url, release)
    try:
        with RewardClient(settings) as client:
            handle = client.submit([{"completion": "a"}, {"completion": "b"}], "counting", run_id="outage")
            wait_for(lambda: _calls(tmp_path), "the reward's call")
            time.sleep(8)  # the store stays locked while the task persists
            release.set()
            result = handle.get(timeout=120)
    finally:
        release.set()
        holder.join()
    assert result.statuses["counting"] == ["ok", "ok"]
    assert _calls(tmp_path) == ["2"]
    assert _rows(sqlite_url, result.batch_id) == [(0, "ok", 0.5), (1, "ok", 0.5)]
    assert worker.proc.poll() is None


@pytest.mark.slow
def test_a_store_that_refuses_the_write_fails_the_task_at_once(
    tmp_path: Path, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    rewards = function_reward(tmp_path, "counting", COUNTING)
    worker = start_worker(
        redis_server.url,
        sqlite_url,
        "--rewards",
        "counting",
        "--pool",
        "solo",
        env={"REWARDQ_REWARDS": str(rewards)},
    )
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:  # the same failure on every attempt: a permanent error
        conn.execute(text("ALTER TABLE scores RENAME TO scores_elsewhere"))
    engine.dispose()
    settings = Settings.from_env({}, broker_url=redis_server.url, rewards=rewards, timeout=120)
    with RewardClient(settings) as client:
        result = client.score([{"completion": "a"}], "counting", run_id="refused")
    assert result.statuses["counting"] == ["error"]
    assert "no such table" in result.errors["counting"][0]
    assert _calls(tmp_path) == ["1"]
    log = worker.output()
    assert "audit write refused, not retried" in log and "retrying in" not in log, log
