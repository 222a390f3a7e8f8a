"""TRL's real GRPOTrainer on a tiny local Qwen2, on the CPU, with rewards from a real `rewardq worker`
over Redis: what TRL computed and logged equals the audit rows."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from rewardq import RewardClient, Settings
from tests.conftest import RedisServer, WorkerProcess
from tests.tinymodels import build_causal_lm

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

# cosine scales by completion length (from TRL's completion_ids): varied values even for a random model.
REWARDS = {"accuracy": 1.0, "cosine": 0.5}


def _audit(database_url: str, run_id: str) -> list[Any]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            query = sa.text(
                "SELECT step, batch_id, sample_index, reward, value, status FROM scores "
                "WHERE run_id = :run ORDER BY step, sample_index, reward"
            )
            return list(conn.execute(query, {"run": run_id}))
    finally:
        engine.dispose()


def _train(
    model_dir: Path, out: Path, reward_funcs: list[Any], weights: list[float] | None, chat: bool = False
) -> Any:
    """A few GRPO steps; ``chat`` makes the prompts chat messages, so TRL passes completions as messages."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    class RecordingTrainer(GRPOTrainer):  # type: ignore[misc]
        """The real trainer; it also keeps the reward matrix TRL computed at each step."""

        computed: ClassVar[list[tuple[int, list[list[float]]]]] = []

        def _calculate_rewards(self, *args: Any) -> Any:
            rewards = super()._calculate_rewards(*args)
            self.computed.append((self.state.global_step, rewards.tolist()))
            return rewards

    # Every other solution is empty: accuracy is unscorable there, None to TRL (NaN in its matrix).
    questions = [f"What is {i} + {i}?" for i in range(8)]
    prompts: list[Any] = [[{"role": "user", "content": q}] for q in questions] if chat else questions
    dataset = Dataset.from_list(
        [{"prompt": p, "solution": f"${2 * i}$" if i % 2 else ""} for i, p in enumerate(prompts)]
    )
    config = GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        max_steps=3,
        learning_rate=1e-4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        reward_weights=weights,
        seed=0,
    )
    trainer = RecordingTrainer(
        model=str(model_dir), reward_funcs=reward_funcs, args=config, train_dataset=dataset
    )
    trainer.train()
    return trainer


@pytest.fixture
def worker_settings(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> Settings:
    start_worker(redis_server.url, sqlite_url, "--rewards", "accuracy,cosine", "--concurrency", "1")
    return Settings.from_env({}, broker_url=redis_server.url, database_url=sqlite_url)


def _values(rows: list[Any], step: int, reward: str) -> list[float]:
    return [math.nan if r.value is None else r.value for r in rows if r.step == step and r.reward == reward]


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, abs=1e-6)
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_one_reward_function_per_reward_shares_one_submission_per_step(
    worker_settings: Settings, sqlite_url: str, tmp_path: Path, asynchronous: bool
) -> None:
    """TRL calls sync functions in turn and gathers async ones concurrently: one submission either way."""
    model = build_causal_lm(tmp_path / "lm")
    with RewardClient(worker_settings) as client:
        funcs = client.reward_funcs(REWARDS, run_id="trl-per-reward", asynchronous=asynchronous)
        assert [f.__name__ for f in funcs] == ["accuracy", "cosine"]
        trainer = _train(model, tmp_path / "out", funcs, list(REWARDS.values()))

    rows = _audit(sqlite_url, "trl-per-reward")
    assert len(trainer.computed) == 3
    for step, matrix in trainer.computed:
        assert len({r.batch_id for r in rows if r.step == step}) == 1, "one submission for both rewards"
        for column, reward in enumerate(REWARDS):
            assert _same([row[column] for row in matrix], _values(rows, step, reward)), (step, reward)
    statuses = {r.status for r in rows if r.reward == "accuracy"}
    assert statuses == {"ok", "unscorable"}

    assert len({r.value for r in rows if r.reward == "cosine" and r.status == "ok"}) > 1

    logged = [entry for entry in trainer.state.log_history if "rewards/cosine/mean" in entry]
    assert len(logged) == 3
    for entry, (step, _) in zip(logged, trainer.computed, strict=True):
        step_rows = [r for r in rows if r.step == step]
        ok = [r.value for r in step_rows if r.reward == "cosine" and r.status == "ok"]
        if ok:
            assert entry["rewards/cosine/mean"] == pytest.approx(sum(ok) / len(ok), abs=1e-5)
            assert entry["rewardq/cosine/mean"] == pytest.approx(sum(ok) / len(ok), abs=1e-5)
        for status in ("ok", "unscorable"):
            count = sum(r.status == status for r in step_rows if r.reward == "accuracy")
            assert entry.get(f"rewardq/accuracy/{status}", 0) == count


def test_the_async_weighted_total_of_chat_completions_equals_the_audit(
    worker_settings: Settings, sqlite_url: str, tmp_path: Path
) -> None:
    model = build_causal_lm(tmp_path / "lm")
    with RewardClient(worker_settings) as client:
        total = client.reward_func(REWARDS, run_id="trl-total", asynchronous=True)
        assert total.__name__ == "rewardq"
        trainer = _train(model, tmp_path / "out", [total], None, chat=True)

    assert isinstance(trainer._logs["completion"][0], list), "TRL passed the completions as chat messages"
    rows = _audit(sqlite_url, "trl-total")
    for step, matrix in trainer.computed:
        accuracy, cosine = _values(rows, step, "accuracy"), _values(rows, step, "cosine")
        expected = [
            math.nan
            if math.isnan(a) and math.isnan(c)
            else (0.0 if math.isnan(a) else a) + 0.5 * (0.0 if math.isnan(c) else c)
            for a, c in zip(accuracy, cosine, strict=True)
        ]
        assert _same([row[0] for row in matrix], expected), step
