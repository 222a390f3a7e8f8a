"""``judge`` and ``remote_reward_model`` against a real vLLM CPU server (tests/vllm_server.py).

The judge is a tiny random chat LM: structured ``choice`` output makes its replies parseable anyway.
The reward model is a tiny random one-label classifier on the pooling runner; its scores through
``remote_reward_model`` must equal a plain transformers forward pass on the same conversation rendered
with the tokenizer's chat template. Measured: max abs difference 1.7e-8 on logits of about 1e-2;
the tolerance is 1e-6.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rewardq import RewardClient, Settings
from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.models.remote_reward_model import (
    RemoteRewardModel,
    RemoteRewardModelOptions,
    conversation,
)
from tests.conftest import RedisServer, WorkerProcess

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

# The servers are the session fixtures of tests/vllm_server.py (registered by tests/conftest.py).
pytest.importorskip("tests.vllm_server", reason="tests/vllm_server.py (the vLLM fixtures) is not here")

TOLERANCE = 1e-6
CHOICES = [str(k) for k in range(10)]


def audit(database_url: str) -> list[Any]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT step, status, value, raw, cache_hit, http_attempts, replica, prompt_tokens,"
                        " completion_tokens FROM scores ORDER BY step, sample_index"
                    )
                )
            )
    finally:
        engine.dispose()


def test_judge_with_structured_choice_through_a_worker(
    vllm_judge_server: Any,
    redis_server: RedisServer,
    sqlite_url: str,
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    config = tmp_path / "rewards.toml"
    config.write_text(
        "[rewards.judge]\n"
        'kind = "judge"\n'
        f'base_url = "{vllm_judge_server.base_url}"\n'
        f'model = "{vllm_judge_server.model}"\n'
        f"structured = {{ choice = {CHOICES!r} }}\n".replace("'", '"')
        + "score_range = [0, 9]\n"
        "max_tokens = 4\n"
        "request_timeout = 120\n"
    )
    start_worker(
        redis_server.url, sqlite_url, "--config", str(config), "--rewards", "judge", "--pool", "threads",
        "--concurrency", "4",
    )  # fmt: skip
    settings = Settings.from_env(
        {}, broker_url=redis_server.url, database_url=sqlite_url, rewards=config, chunk_size=4
    )
    rows = [
        {"prompt": "What is 2 + 2?", "completion": c}
        for c in ["4", "5", "4", "four", "The answer is 4.", "5"]
    ]
    with RewardClient(settings) as client:
        first = client.score(rows, "judge", run_id="vllm-judge", step=1, timeout=600)
        second = client.score(rows, "judge", run_id="vllm-judge", step=2, timeout=600)

    for result in (first, second):
        assert result.statuses["judge"] == ["ok"] * 6, result.errors
        assert all(v in {k / 9 for k in range(10)} for v in result.rewards["judge"])
    assert second.rewards == first.rewards
    rows_audited = audit(sqlite_url)
    step1 = [r for r in rows_audited if r.step == 1]
    step2 = [r for r in rows_audited if r.step == 2]
    assert all(r.raw in CHOICES for r in rows_audited)
    sent = [r for r in step1 if not r.cache_hit]
    assert sent and all(
        r.http_attempts == 1 and r.replica == vllm_judge_server.base_url and r.prompt_tokens > 0 for r in sent
    )
    assert all(r.cache_hit and r.http_attempts == 0 for r in step2)


def test_remote_reward_model_matches_a_transformers_forward_pass(vllm_reward_server: Any) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    samples = [
        Sample(prompt="What is 2 + 2?", completion="4"),
        Sample(prompt="Say hi.", completion="<think>hm</think><answer>hi</answer>"),
        Sample(
            prompt=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Rate this."}],
            completion=[{"role": "assistant", "content": "The answer is 42. Reward: 1."}],
        ),
        Sample(prompt="Solve 2x + 3 = 7.", completion="x = 2, so \\boxed{2}"),
    ]
    resources = WorkerResources(Settings.from_env({}))
    try:
        reward = RemoteRewardModel(
            "rm", RemoteRewardModelOptions(base_url=vllm_reward_server.base_url, request_timeout=120)
        )
        reward.setup(resources)
        scores = reward.score(samples)
    finally:
        resources.close()

    tokenizer = AutoTokenizer.from_pretrained(vllm_reward_server.model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        vllm_reward_server.model_dir, dtype=torch.float32
    ).eval()
    with torch.no_grad():
        expected = [
            float(
                model(
                    **tokenizer(
                        tokenizer.apply_chat_template(conversation(s), tokenize=False), return_tensors="pt"
                    )
                ).logits[0, 0]
            )
            for s in samples
        ]
    assert [s.status for s in scores] == ["ok"] * 4
    assert max(expected) - min(expected) > 100 * TOLERANCE  # random weights: still told apart
    assert [s.value for s in scores] == pytest.approx(expected, abs=TOLERANCE)
    assert all(s.meta is not None and s.meta.prompt_tokens for s in scores)
