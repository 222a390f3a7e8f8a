"""Tests for cross-task coalescing: which rewards are coalesced, and how a flush answers each task.

The flush is driven here with celery-batches' own request objects on the in-memory broker and result
backend; the whole path through a real worker over Redis is in
tests/workers/rewards/test_reward_model_worker.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from celery import states
from celery_batches import SimpleRequest
from sqlalchemy import event

from rewardq.storage import upgrade, write_scores
from rewardq.wire.schema import TASK_NAME, queue_for
from rewardq.wire.settings import Settings
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.runtime.app import create_app
from rewardq.workers.runtime.coalesce import coalesces, prefetch_multiplier, score_requests
from rewardq.workers.runtime.task import score_payload


@pytest.fixture
def config(tmp_path: Path) -> RewardsConfig:
    path = tmp_path / "rewards.toml"
    path.write_text('[rewards.rm]\nkind = "reward_model"\nmodel = "/models/rm"\n')
    return RewardsConfig.load(path)


def test_only_rewards_whose_kind_holds_a_model_are_coalesced(config: RewardsConfig) -> None:
    assert coalesces(config, "rm")
    assert not coalesces(config, "format")
    assert not coalesces(config, "no-such-reward")


def test_a_worker_serving_a_model_reward_reserves_enough_to_fill_a_flush(config: RewardsConfig) -> None:
    settings = Settings.from_env({}, coalesce_tasks=32)
    assert prefetch_multiplier(settings, config, ["rm", "format"]) == 32
    assert prefetch_multiplier(settings, config, ["format", "accuracy"]) == 1
    assert prefetch_multiplier(settings.with_(prefetch_multiplier=100), config, ["rm"]) == 100


def _request(task_id: str, payload: Any, hostname: str = "worker@test") -> SimpleRequest:
    return SimpleRequest(
        task_id,
        TASK_NAME,
        (payload,),
        {},
        {"routing_key": "rewards.format"},
        hostname,
        False,
        None,
        None,
        {},
    )


def _payload(batch: str, completions: list[str]) -> dict[str, Any]:
    return {
        "batch_id": batch,
        "run_id": "coalesce",
        "reward": "format",
        "samples": [{"completion": c} for c in completions],
    }


def test_a_flush_answers_each_task_as_if_it_were_scored_alone(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(database)
    app = create_app(Settings.from_env({}, database_url=database))
    runtime = app.rewardq_runtime
    good = "<think>x</think><answer>1</answer>"
    first, second = _payload("b1", [good, "no"]), _payload("b2", ["nope"])
    requests = [_request("ok-1", first), _request("bad", {"reward": "format"}), _request("ok-2", second)]
    try:
        score_requests(app, runtime, requests)
        alone = [score_payload(runtime, _payload("c1", [good, "no"])), score_payload(runtime, second)]
        assert app.backend.get_task_meta("ok-1")["result"]["values"] == alone[0]["values"]
        assert app.backend.get_task_meta("ok-2")["result"] == alone[1]
        failed = app.backend.get_task_meta("bad")
        assert failed["status"] == states.FAILURE
        assert "rejected task" in str(failed["result"])
    finally:
        runtime.close()
        app.close()


def test_a_flush_writes_its_tasks_in_one_statement_and_a_bad_task_fails_alone(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(database)
    app = create_app(Settings.from_env({}, database_url=database))
    runtime = app.rewardq_runtime
    inserts: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO scores"):
            inserts.append(statement)

    earlier = {  # an earlier delivery of b0 wrote sample 1: that task answers what the audit holds
        "run_id": "coalesce",
        "batch_id": "b0",
        "sample_index": 1,
        "sample_hash": "0" * 64,
        "reward": "format",
        "scorer": "earlier",
        "value": 0.25,
        "status": "ok",
        "latency_ms": 1.0,
        "attempts": 1,
        "worker_host": "earlier",
    }
    with runtime.engine.begin() as conn:
        write_scores(conn, [earlier])
    event.listen(runtime.engine, "before_cursor_execute", count)
    try:
        score_requests(app, runtime, [_request(f"t{i}", _payload(f"b{i}", ["x", "y"])) for i in range(3)])
        assert len(inserts) == 1
        answers = [app.backend.get_task_meta(f"t{i}")["result"] for i in range(3)]
        assert [a["values"] for a in answers] == [[0.0, 0.25], [0.0, 0.0], [0.0, 0.0]]
        # A worker name longer than the audit column: that task's rows are refused, the other's written.
        bad, good = (
            _request("long", _payload("c1", ["x"]), "w" * 300),
            _request("fine", _payload("c2", ["x"])),
        )
        score_requests(app, runtime, [bad, good])
        failed = app.backend.get_task_meta("long")
        assert failed["status"] == states.FAILURE and "worker_host" in str(failed["result"])
        assert app.backend.get_task_meta("fine")["result"]["statuses"] == ["ok"]
    finally:
        runtime.close()
        app.close()


def _locked_then_written(failures: int) -> Any:
    """A write that fails ``failures`` times the way a busy SQLite file does (a transient error), then
    writes; ``calls`` counts the attempts."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from rewardq.storage import write_scores

    def write(*args: Any, **kwargs: Any) -> int:
        write.calls += 1  # type: ignore[attr-defined]
        if write.calls <= failures:  # type: ignore[attr-defined]
            raise OperationalError("INSERT INTO scores", {}, sqlite3.OperationalError("database is locked"))
        return write_scores(*args, **kwargs)

    write.calls = 0  # type: ignore[attr-defined]
    return write


def test_an_audit_outage_retries_the_write_not_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(database)
    write = _locked_then_written(2)
    monkeypatch.setattr("rewardq.storage.record.write_scores", write)
    monkeypatch.setattr("rewardq.storage.record.time.sleep", lambda _: None)
    app = create_app(Settings.from_env({}, database_url=database))
    runtime = app.rewardq_runtime
    try:
        score_requests(app, runtime, [_request("retried", _payload("b1", ["x"]))])
        assert write.calls == 3
        meta = app.backend.get_task_meta("retried")
        assert meta["status"] == states.SUCCESS and meta["result"]["statuses"] == ["ok"]
        with app.connection_for_read() as conn:
            assert conn.SimpleQueue(queue_for("format")).qsize() == 0  # nothing published again
    finally:
        runtime.close()
        app.close()


def test_a_write_the_store_refuses_is_not_retried(tmp_path: Path) -> None:
    # The audit store was never migrated: the write fails the same way every time (a permanent error).
    app = create_app(Settings.from_env({}, database_url=f"sqlite:///{tmp_path / 'audit.db'}"))
    runtime = app.rewardq_runtime
    try:
        score_requests(app, runtime, [_request("refused", _payload("b1", ["x"]))])
        meta = app.backend.get_task_meta("refused")
        assert meta["status"] == states.FAILURE
        assert "no such table" in str(meta["result"])
        with app.connection_for_read() as conn:
            assert conn.SimpleQueue(queue_for("format")).qsize() == 0
    finally:
        runtime.close()
        app.close()


def test_an_outage_past_the_retry_budget_fails_the_task_with_the_audit_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(database)
    monkeypatch.setattr("rewardq.storage.record.write_scores", _locked_then_written(100))
    app = create_app(Settings.from_env({}, database_url=database, audit_retry=0))
    runtime = app.rewardq_runtime
    try:
        score_requests(app, runtime, [_request("given-up", _payload("b1", ["x"]))])
        meta = app.backend.get_task_meta("given-up")
        assert meta["status"] == states.FAILURE
        assert "database is locked" in str(meta["result"])
    finally:
        runtime.close()
        app.close()
