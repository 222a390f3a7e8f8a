"""verl's custom reward function against a real `rewardq worker` over Redis, called as verl's reward
managers call it: per sample from many threads at once (the reward loop) and per batch (lists)."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from rewardq import InvalidInputError
from rewardq.integrations.verl import compute_score
from tests.conftest import RedisServer, WorkerProcess

pytestmark = pytest.mark.slow

REWARD_KWARGS = {"rewards": {"accuracy": 1.0, "format": 0.5}}
CORRECT = "<think>2+2 is 4</think><answer>\\boxed{4}</answer>"
WRONG = "<think>guess</think><answer>\\boxed{5}</answer>"
UNFORMATTED = "The answer is \\boxed{4}."


def _samples(n: int) -> list[dict[str, Any]]:
    """verl's per-sample arguments; extra_info as verl fills it (numpy values, nested scores)."""
    texts = [CORRECT, WRONG, UNFORMATTED]
    return [
        {
            "data_source": "openai/gsm8k",
            "solution_str": texts[i % 3],
            "ground_truth": "4",
            "extra_info": {"index": np.int64(i), "num_turns": None, "rollout_reward_scores": {}},
        }
        for i in range(n)
    ]


EXPECTED = [1.5, 0.5, 1.0]  # accuracy + 0.5 * format for the three texts


@pytest.fixture
def worker(
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    start_worker(redis_server.url, sqlite_url, "--rewards", "accuracy,format", "--concurrency", "2")
    monkeypatch.setenv("REWARDQ_BROKER_URL", redis_server.url)
    monkeypatch.setenv("REWARDQ_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("REWARDQ_RUN_ID", "verl-run")
    return sqlite_url


def _audit(database_url: str) -> list[Any]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT batch_id, reward, value, status FROM scores")))
    finally:
        engine.dispose()


def test_per_sample_calls_from_many_threads_are_coalesced(worker: str) -> None:
    samples = _samples(48)
    with ThreadPoolExecutor(max_workers=48) as pool:  # as verl's reward loop runs sync scorers
        scores = list(pool.map(lambda kw: compute_score(**kw, **REWARD_KWARGS), samples))
    assert scores == [EXPECTED[i % 3] for i in range(48)]

    rows = _audit(worker)
    assert len(rows) == 96
    batches = {r.batch_id for r in rows}
    assert len(batches) < len(samples), f"{len(batches)} submissions for {len(samples)} samples"
    assert sum(r.value for r in rows if r.reward == "accuracy") == 32


def test_the_batch_manager_call_is_one_submission(worker: str) -> None:
    samples = _samples(9)
    scores = compute_score(
        data_sources=np.array([s["data_source"] for s in samples], dtype=object),
        solution_strs=[s["solution_str"] for s in samples],
        ground_truths=[s["ground_truth"] for s in samples],
        extra_infos=[s["extra_info"] for s in samples],
        **REWARD_KWARGS,
    )
    assert scores == [EXPECTED[i % 3] for i in range(9)]
    rows = _audit(worker)
    assert len({r.batch_id for r in rows}) == 1
    assert len(rows) == 18


def test_a_sample_without_any_reward_is_nan_unless_told_otherwise(worker: str) -> None:
    sample = {**_samples(1)[0], "ground_truth": ""}  # accuracy: unscorable
    only_accuracy = {"rewards": ["accuracy"]}
    assert math.isnan(compute_score(**sample, **only_accuracy))
    assert compute_score(**sample, **only_accuracy, missing=0.0) == 0.0
    statuses = [r.status for r in _audit(worker)]
    assert statuses == ["unscorable", "unscorable"]


def test_a_missing_rewards_setting_is_a_clear_error(worker: str) -> None:
    with pytest.raises(InvalidInputError, match="field 'rewards': missing: set custom_reward_function"):
        compute_score(**_samples(1)[0])
