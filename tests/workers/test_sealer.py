"""A worker seals its own audit rows, with no one calling ``rewardq audit seal``: rows are written unsealed
and its sealer thread chains them soon after, and it also seals rows other writers left unsealed (a worker
killed between its commit and its seal)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from rewardq import Settings
from rewardq.broker import make_app
from rewardq.storage import make_engine, upgrade, verify_run, write_scores
from rewardq.storage.verify import ChainReport
from rewardq.wire.schema import TASK_NAME, queue_for
from tests.conftest import RedisServer, WorkerProcess
from tests.score_rows import score_row

GOOD = "<think>a</think>\n<answer>b</answer>"


def _sealed(url: str, run: str, rows: int, within_s: float = 120.0) -> ChainReport:
    """The run's report once all ``rows`` of it are sealed (waits for the sealer; not a timing check)."""
    engine = make_engine(url)
    deadline = time.monotonic() + within_s
    try:
        while True:
            with engine.connect() as conn:
                report = verify_run(conn, run)
            if (report.rows == rows and not report.unsealed) or time.monotonic() > deadline:
                return report
            time.sleep(0.2)
    finally:
        engine.dispose()


def _orphan(batch: str, index: int) -> dict[str, Any]:
    return score_row(index, run_id="orphaned", batch_id=batch, reward="format", worker_host="killed-worker")


@pytest.mark.slow
def test_a_workers_rows_are_sealed_without_anyone_calling_seal(
    redis_server: RedisServer, postgres_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    with engine.begin() as conn:  # rows a killed worker committed and never sealed
        write_scores(conn, [_orphan("dead", i) for i in range(4)])
    engine.dispose()
    start_worker(redis_server.url, postgres_url, "--rewards", "format", "--pool", "solo")
    app = make_app(Settings.from_env({}, broker_url=redis_server.url))
    try:
        for _ in range(3):
            payload = {
                "batch_id": uuid.uuid4().hex,
                "run_id": "sealed-by-worker",
                "step": 1,
                "reward": "format",
                "samples": [{"completion": GOOD}] * 5,
            }
            app.send_task(TASK_NAME, args=[payload], queue=queue_for("format")).get(
                timeout=120,
                disable_sync_subtasks=False,  # an embedded worker earlier in this process set it
            )
    finally:
        app.close()
    report = _sealed(postgres_url, "sealed-by-worker", 15)
    assert report.intact and report.unsealed == [] and report.head_seq == 15, report
    orphaned = _sealed(postgres_url, "orphaned", 4)
    assert orphaned.intact and orphaned.unsealed == [] and orphaned.head_seq == 4, orphaned
