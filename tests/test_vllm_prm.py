"""A real vLLM CPU server serving a process reward model with STEP pooling: ``remote_reward_model`` with
``per_step`` reads the same step scores from it as the local ``process_reward_model`` computes from the
same weights (the issue's vLLM parity check for per-step pooling output)."""

from __future__ import annotations

import pytest

from rewardq.wire.schema import Sample
from rewardq.wire.settings import Settings
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.models.process_reward_model import ProcessRewardModel, ProcessRewardModelOptions
from rewardq.workers.rewards.models.remote_reward_model import RemoteRewardModel, RemoteRewardModelOptions
from tests.vllm_server import PRM_MODEL, VllmServer

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

TOLERANCE = 1e-4
SAMPLES = [
    Sample(prompt="What is 2 + 3?", completion="Add 2 and 3.\n\nThe sum is 5.\n\nSo the answer is 5."),
    Sample(prompt="What is 7 * 6?", completion="Seven times six is forty-two."),
    Sample(
        prompt=[{"role": "user", "content": "Solve x + 1 = 3."}],
        completion="Subtract 1 from both sides.\n\nx = 2.",
    ),
]


def test_vllm_step_pooling_gives_the_local_process_reward_models_step_scores(
    vllm_prm_server: VllmServer,
) -> None:
    resources = WorkerResources(Settings())
    local = ProcessRewardModel("prm", ProcessRewardModelOptions(model=str(vllm_prm_server.model_dir)))
    local.setup(resources)
    remote = RemoteRewardModel(
        "prm_remote",
        RemoteRewardModelOptions(base_url=vllm_prm_server.base_url, model=PRM_MODEL, per_step={}),
    )
    remote.setup(resources)
    try:
        expected = local.score(SAMPLES)
        served = remote.score(SAMPLES)
    finally:
        local.close()
        remote.close()
    for want, got in zip(expected, served, strict=True):
        assert want.status == "ok" and got.status == "ok", (want, got)
        assert want.steps is not None and got.steps is not None
        assert len(got.steps) == len(want.steps)
        assert list(got.steps) == pytest.approx(list(want.steps), abs=TOLERANCE)
        assert got.value == pytest.approx(want.value, abs=TOLERANCE)
        assert got.step_ends == want.step_ends
    steps = [s for score in expected for s in score.steps or ()]
    assert max(steps) - min(steps) > 10 * TOLERANCE  # random weights still tell the steps apart
