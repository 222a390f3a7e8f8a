"""A reward that runs in the worker process (a model) and gets stuck where Python cannot stop it: the
chunk is answered ``timeout``, the worker hands the tasks it holds back and exits for its supervisor,
and another worker scores them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rewardq import RewardClient, Settings
from rewardq.workers.runtime.watchdog import EXIT_STUCK
from tests.conftest import RedisServer, WorkerProcess

STUCK_PLUGIN = """
import threading

from rewardq.workers.rewards.base import Reward, Score


class Stuck(Reward):
    \"\"\"A model stand-in: blocks forever on a sample that says HANG.\"\"\"

    kind = "stuck"
    holds_model = True

    def score(self, samples):
        if any("HANG" in s.completion_text for s in samples):
            threading.Event().wait()
        return [Score.ok(1.0) for _ in samples]


class StuckClient(Stuck):
    \"\"\"A judge stand-in: in the worker process, not a model (its tasks are not coalesced).\"\"\"

    kind = "stuck_client"
    holds_model = False
    runs_in = "process"


def register(kinds):
    kinds.add("stuck", Stuck)
    kinds.add("stuck_client", StuckClient)
"""
TIMEOUT_S = 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "handed_back"), [("stuck", "tasks handed back"), ("stuck_client", "reject requeue=True")]
)
def test_a_stuck_call_answers_timeout_and_its_worker_hands_back_its_tasks(
    tmp_path: Path,
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    kind: str,
    handed_back: str,
) -> None:
    """A model's tasks are coalesced (sent again when handed back); a judge's plain (rejected, requeued)."""
    (tmp_path / "stuck.py").write_text(STUCK_PLUGIN)
    rewards = tmp_path / "rewards.toml"
    rewards.write_text(f'plugins = ["stuck.py"]\n[rewards.stuck]\nkind = "{kind}"\ntimeout = {TIMEOUT_S}\n')
    env = {"REWARDQ_REWARDS": str(rewards), "REWARDQ_PREFETCH_MULTIPLIER": "4"}
    first = start_worker(redis_server.url, sqlite_url, "--rewards", "stuck", "--pool", "solo", env=env)
    settings = Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url, rewards=rewards)
    with RewardClient(settings) as client:
        started = time.monotonic()
        stuck = client.submit([{"completion": "HANG"}, {"completion": "fine"}], "stuck", run_id="watchdog")
        answered = stuck.get(timeout=60)
        assert time.monotonic() - started < TIMEOUT_S + 5
        assert answered.statuses["stuck"] == ["timeout", "timeout"]
        assert f"within its timeout of {TIMEOUT_S}s" in answered.errors["stuck"][0]
        # While the call is still stuck (the grace period), more tasks reach the worker: it holds them.
        held = [client.submit([{"completion": f"next {i}"}], "stuck", run_id="watchdog") for i in range(3)]
        assert first.proc.wait(timeout=60) == EXIT_STUCK
        assert "hands its tasks back and exits" in first.output()
        assert handed_back in first.output()
        start_worker(redis_server.url, sqlite_url, "--rewards", "stuck", "--pool", "solo", env=env)
        for handle in held:
            assert handle.get(timeout=60).statuses["stuck"] == ["ok"]
