"""Scenario 4: judge servers that are down, slow (past the request timeout) or answering garbage: the
worker retries, then answers explicit ``error``/``timeout`` statuses, and its queue keeps moving."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rewardq import RewardClient
from tests.conftest import WorkerProcess
from tests.fake_openai import FakeOpenAI, garbage, hang, verdict
from tests.faults.conftest import (
    DeliveryCheck,
    FaultRedis,
    FaultRewards,
    Submitted,
    client_settings,
    samples,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

JUDGES = ["judge_down", "judge_slow", "judge_garbage"]
MAX_RETRIES = 1
FAILED = {"error", "timeout"}


def judge_config(path: Path, servers: dict[str, FakeOpenAI]) -> Path:
    path.write_text(
        "".join(
            f"[rewards.{name}]\n"
            'kind = "judge"\n'
            f'base_url = "{server.base_url}"\n'
            "score_range = [0, 10]\n"
            "request_timeout = 1.0\n"
            f"max_retries = {MAX_RETRIES}\n"
            "reask = 0\n"
            "cache = false\n\n"
            for name, server in servers.items()
        )
    )
    return path


def test_judge_down_slow_or_garbage_gives_explicit_statuses_and_the_queue_moves(
    fault_redis: FaultRedis,
    sqlite_url: str,
    fault_rewards: FaultRewards,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
    delivery_check: DeliveryCheck,
) -> None:
    servers = {
        "judge_down": FakeOpenAI(verdict("[[5]]")).start(),
        "judge_slow": FakeOpenAI(hang()).start(),
        "judge_garbage": FakeOpenAI(garbage()).start(),
    }
    config = judge_config(tmp_path / "judges.toml", servers)
    rewards = FaultRewards(config, fault_rewards.busy_dir)
    try:
        worker = start_worker(
            fault_redis.url,
            sqlite_url,
            *("--config", str(config), "--rewards", ",".join([*JUDGES, "format"]), "--pool", "prefork"),
            *("--concurrency", "2"),
        )
        servers["judge_down"].stop()  # reachable when the worker started, gone now
        settings = client_settings(fault_redis.url, sqlite_url, rewards)
        with RewardClient(settings) as client:
            started = time.monotonic()
            failing = client.submit(samples(4, "judged"), [*JUDGES, "format"], run_id="faults-judge")
            moving = client.submit(samples(4, "moving"), ["format"], run_id="faults-judge")
            moved = moving.get(timeout=60)
            failed = failing.get(timeout=120)
            recovery = time.monotonic() - started
    finally:
        for name in ("judge_slow", "judge_garbage"):
            servers[name].stop()

    allowed = dict.fromkeys(JUDGES, FAILED)
    counts = delivery_check(
        "judge down, slow or returning garbage",
        [
            Submitted(failing.batch_id, 4, [*JUDGES, "format"], failed, allowed),
            Submitted(moving.batch_id, 4, ["format"], moved),
        ],
        database_url=sqlite_url,
        redis_url=fault_redis.url,
        trials=len(JUDGES),
        recovery_s=round(recovery, 1),
    )
    assert counts.clean, counts.problems
    for judge in JUDGES:
        assert set(failed.statuses[judge]) <= FAILED, (judge, failed.statuses[judge])
        assert len(failed.errors[judge]) == 4, (judge, failed.errors[judge])
    # The slow server was asked again after each request timed out.
    assert len(servers["judge_slow"].chat_requests) >= 4 * (MAX_RETRIES + 1)
    assert worker.proc.poll() is None, worker.output()
