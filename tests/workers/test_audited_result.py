"""What a task returns is what the audit holds: a redelivered task (here: one whose rows an earlier
delivery wrote with other values, as a sampled judge would give) returns the first, audited values,
not what it just computed; samples the audit did not hold yet get this delivery's scores."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from rewardq import Settings
from rewardq.broker import make_app
from rewardq.storage import make_engine, upgrade, write_scores
from rewardq.wire.schema import TASK_NAME, queue_for
from tests.conftest import RedisServer, WorkerProcess

GOOD = "<think>a</think>\n<answer>b</answer>"


def _earlier_row(
    batch: str, index: int, value: float | None, status: str, error: str | None
) -> dict[str, Any]:
    return {
        "run_id": "audited",
        "batch_id": batch,
        "sample_index": index,
        "sample_hash": "0" * 64,
        "reward": "format",
        "scorer": "earlier",
        "value": value,
        "status": status,
        "error": error,
        "latency_ms": 1.0,
        "attempts": 1,
        "worker_host": "earlier-worker",
    }


@pytest.mark.slow
def test_a_task_returns_the_values_the_audit_already_holds(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    batch = uuid.uuid4().hex
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        write_scores(
            conn,
            [
                _earlier_row(batch, 0, 0.25, "ok", None),
                _earlier_row(batch, 1, None, "error", "judge said something else the first time"),
            ],
        )
    start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--pool", "solo")
    app = make_app(Settings.from_env({}, broker_url=redis_server.url))
    payload = {
        "batch_id": batch,
        "run_id": "audited",
        "reward": "format",
        "samples": [{"completion": GOOD}] * 3,
    }
    try:
        result = app.send_task(TASK_NAME, args=[payload], queue=queue_for("format")).get(
            timeout=120,
            disable_sync_subtasks=False,  # an embedded worker earlier in this process set it
        )
    finally:
        app.close()
    assert result["values"] == [0.25, None, 1.0]  # the format reward alone would give 1.0 to each
    assert result["statuses"] == ["ok", "error", "ok"]
    assert result["errors"] == {"1": "judge said something else the first time"}
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT sample_index, value, scorer FROM scores WHERE batch_id = :b ORDER BY sample_index"),
            {"b": batch},
        ).all()
    engine.dispose()
    assert [(r.sample_index, r.value, r.scorer) for r in stored][:2] == [
        (0, 0.25, "earlier"),
        (1, None, "earlier"),
    ]
    assert len(stored) == 3 and stored[2].value == 1.0
