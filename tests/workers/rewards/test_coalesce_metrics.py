"""A model worker's metrics for coalesced tasks: the flush's size, and each task's queue wait and samples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rewardq import RewardClient, Settings
from tests.conftest import RedisServer, WorkerProcess, free_port
from tests.workers.rewards.test_reward_model_worker import rewards_file
from tests.workers.test_metrics import by_label, scrape

pytestmark = pytest.mark.slow


def test_a_flush_of_eight_tasks_is_one_coalesced_call_of_eight(
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    classifier_right: Path,
    tmp_path: Path,
) -> None:
    config = rewards_file(tmp_path, classifier_right, token_budget=4096)
    rows = [{"prompt": f"What is {i} + 1?", "completion": f"It is {i + 1}."} for i in range(32)]
    settings = Settings.from_env(
        {}, broker_url=redis_server.url, chunk_size=4, rewards=config, serve_wait=0, timeout=120
    )
    port = free_port()
    with RewardClient(settings) as client:
        handle = client.submit(rows, "rm", run_id="coalesce")  # eight 4-sample tasks wait for the worker
        start_worker(
            redis_server.url,
            sqlite_url,
            *("--rewards", "rm", "--config", str(config), "--metrics-port", str(port)),
            env={"REWARDQ_COALESCE_TASKS": "8", "REWARDQ_COALESCE_WAIT_MS": "5000"},
        )
        result = handle.get(timeout=120)
        del handle
    assert result.statuses["rm"] == ["ok"] * 32
    after = scrape(port)
    assert by_label(after["rewardq_coalesced_tasks_count"], "reward") == {"rm": 1.0}
    assert by_label(after["rewardq_coalesced_tasks_sum"], "reward") == {"rm": 8.0}
    assert by_label(after["rewardq_queue_wait_seconds_count"], "reward") == {"rm": 8.0}
    assert by_label(after["rewardq_samples_scored_total"], "status", reward="rm") == {"ok": 32.0}
