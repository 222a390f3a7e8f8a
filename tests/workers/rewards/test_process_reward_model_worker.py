"""The ``process_reward_model`` kind in the worker: through the runtime's scoring path (step scores kept
on the way to the audit) and through a real ``rewardq worker`` over Redis (the value is the aggregate)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rewardq import RewardClient, Settings
from rewardq.storage import upgrade
from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.rewards.models.process_reward_model import ProcessRewardModel, ProcessRewardModelOptions
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.persist import persist
from rewardq.workers.runtime.scoring import score_together
from rewardq.workers.runtime.validate import prepare
from tests.conftest import RedisServer, WorkerProcess

pytestmark = pytest.mark.slow

ROWS: list[dict[str, Any]] = [
    {"prompt": f"What is {i} + {i}?", "completion": f"Add {i} and {i}.\n\nThat is {2 * i}.", "id": f"s{i}"}
    for i in range(6)
] + [
    {"prompt": "Hi", "completion": "One step only.", "id": "one"},
    {"prompt": "Hi", "completion": "   ", "id": "blank"},
]


def rewards_file(tmp_path: Path, model: Path, aggregate: str) -> Path:
    path = tmp_path / "rewards.toml"
    path.write_text(
        f'[rewards.prm]\nkind = "process_reward_model"\nmodel = "{model}"\naggregate = "{aggregate}"\n'
        "token_budget = 256\n"
    )
    return path


def in_process(model: Path, aggregate: str) -> ProcessRewardModel:
    reward = ProcessRewardModel("prm", ProcessRewardModelOptions(model=str(model), aggregate=aggregate))  # type: ignore[arg-type]
    reward.setup(WorkerResources(Settings()))
    return reward


def test_the_runtime_scoring_path_keeps_the_step_scores_and_audits_the_value(
    token_classifier: Path, sqlite_url: str, tmp_path: Path
) -> None:
    upgrade(sqlite_url)
    config = RewardsConfig.load(rewards_file(tmp_path, token_classifier, "mean"))
    runtime = WorkerRuntime(Settings.from_env({}, database_url=sqlite_url), config)
    try:
        payload = {
            "batch_id": uuid.uuid4().hex,
            "run_id": "steps",
            "reward": "prm",
            "samples": [{"prompt": r["prompt"], "completion": r["completion"]} for r in ROWS],
        }
        item = prepare(runtime, payload)
        score_together(runtime, [item])
        answer = persist(runtime, item)
    finally:
        runtime.close()
    expected = in_process(token_classifier, "mean").score(
        [Sample(prompt=r["prompt"], completion=r["completion"]) for r in ROWS]
    )
    for got, want in zip(item.scores, expected, strict=True):
        assert got is not None and got.status == want.status
        assert got.step_ends == want.step_ends
        if want.steps is None:
            assert got.steps is None
            continue
        assert got.steps == pytest.approx(want.steps, abs=1e-5)
        assert got.value == pytest.approx(sum(want.steps) / len(want.steps), abs=1e-5)
    assert answer["values"][:7] == [s.value for s in item.scores[:7] if s is not None]
    assert answer["statuses"][7] == "unscorable"


@pytest.mark.parametrize("aggregate", ["min", "prod"])
def test_scores_over_redis_are_the_aggregate_of_the_step_scores(
    aggregate: str,
    redis_server: RedisServer,
    sqlite_url: str,
    start_worker: Callable[..., WorkerProcess],
    token_classifier: Path,
    tmp_path: Path,
) -> None:
    config = rewards_file(tmp_path, token_classifier, aggregate)
    start_worker(redis_server.url, sqlite_url, "--rewards", "prm", "--config", str(config))
    settings = Settings.from_env(
        {}, broker_url=redis_server.url, database_url=sqlite_url, chunk_size=3, rewards=config
    )
    with RewardClient(settings) as client:
        result = client.score(ROWS, {"prm": 1.0}, run_id=f"prm-{aggregate}", step=1, timeout=120)

    expected = in_process(token_classifier, aggregate).score(
        [Sample(prompt=r["prompt"], completion=r["completion"]) for r in ROWS]
    )
    assert result.statuses["prm"] == ["ok"] * 7 + ["unscorable"]
    assert result.errors["prm"][7] == "the completion has no step: it is empty or blank"
    combine = min if aggregate == "min" else __import__("math").prod
    for got, want in zip(result.rewards["prm"][:7], expected, strict=False):
        assert want.steps is not None
        assert got == pytest.approx(combine(want.steps), abs=1e-5)
    assert result.rewards["prm"][7] is None
