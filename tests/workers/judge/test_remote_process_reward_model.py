"""``remote_reward_model`` with ``per_step`` against a fake vLLM STEP-pooling server: the tagged
conversation sent, one score per step read from vLLM's reply shape, the aggregate, the cache, and replies
that do not hold one row per step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.models.remote_reward_model import RemoteRewardModel, RemoteRewardModelOptions
from rewardq.workers.rewards.models.steps import QWEN_PRM_SYSTEM
from tests.fake_openai import FakeOpenAI, Reply, Request, step_pooling


def by_length(step: str) -> float:
    """A step's probability of being correct: longer steps score higher, in (0, 1)."""
    return len(step) / (len(step) + 10.0)


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(step_pooling(by_length)) as fake:
        yield fake


def remote_prm(resources: WorkerResources, url: str, **options: Any) -> RemoteRewardModel:
    options.setdefault("per_step", {})
    reward = RemoteRewardModel("prm", RemoteRewardModelOptions(base_url=url, **options))
    reward.setup(resources)
    return reward


def test_sends_the_tagged_conversation_and_reads_one_score_per_step(
    resources: WorkerResources, server: FakeOpenAI
) -> None:
    reward = remote_prm(resources, server.base_url)
    [score] = reward.score([Sample(prompt="2+3?", completion="Add 2 and 3.\n\nIt is 5.")])
    request = server.requests[-1]
    assert request.path == "/pooling"
    assert request.body == {
        "model": "fake-judge",
        "messages": [
            {"role": "system", "content": QWEN_PRM_SYSTEM},
            {"role": "user", "content": "2+3?"},
            {"role": "assistant", "content": "Add 2 and 3.<extra_0>It is 5.<extra_0>"},
        ],
        "use_activation": False,
        "task": "token_classify",
    }
    want = [by_length("Add 2 and 3."), by_length("It is 5.")]
    assert score.status == "ok"
    assert list(score.steps or ()) == pytest.approx(want, abs=1e-9)
    assert score.step_ends == (12, 22)
    assert score.value == pytest.approx(min(want), abs=1e-9)
    assert score.meta is not None and score.meta.prompt_tokens == 29


@pytest.mark.parametrize("activation", [False, True])
def test_the_server_or_the_client_applies_the_softmax_alike(
    resources: WorkerResources, server: FakeOpenAI, activation: bool
) -> None:
    reward = remote_prm(resources, server.base_url, activation=activation, per_step={"aggregate": "prod"})
    [score] = reward.score([Sample(prompt="p", completion="a b\n\nc d e\n\nf")])
    want = [by_length("a b"), by_length("c d e"), by_length("f")]
    assert list(score.steps or ()) == pytest.approx(want, abs=1e-9)
    assert score.value == pytest.approx(want[0] * want[1] * want[2], abs=1e-9)


def test_cached_results_keep_their_steps(resources: WorkerResources, server: FakeOpenAI) -> None:
    reward = remote_prm(resources, server.base_url, per_step={"aggregate": "last"})
    batch = [Sample(prompt="p", completion="one\n\ntwo words")] * 2
    first = reward.score(batch)
    again = reward.score(batch)
    assert len(server.requests) == 2  # GET /models, then one POST for both samples and both calls
    assert again[0].meta is not None and again[0].meta.cache_hit
    assert [s.steps for s in again] == [first[0].steps] * 2
    assert again[0].value == pytest.approx(by_length("two words"))


def test_a_reply_without_one_row_per_step_is_an_error_not_a_value(resources: WorkerResources) -> None:
    async def all_tokens(request: Request) -> Reply:  # a server without STEP pooling: one row per token
        rows = [[0.0, 0.1]] * 17
        return Reply(body={"object": "list", "data": [{"index": 0, "object": "pooling", "data": rows}]})

    with FakeOpenAI(all_tokens) as fake:
        [score] = remote_prm(resources, fake.base_url).score([Sample(prompt="p", completion="a\n\nb")])
    assert score.status == "error" and score.value is None
    assert "17 step scores for 2 steps" in (score.error or "") and "STEP" in (score.error or "")


def test_unscorable_completions_make_no_request(resources: WorkerResources, server: FakeOpenAI) -> None:
    reward = remote_prm(resources, server.base_url)
    blank, tagged = reward.score(
        [Sample(prompt="p", completion="\n\n"), Sample(prompt="p", completion="a<extra_0>")]
    )
    assert blank.status == tagged.status == "unscorable"
    assert [r.method for r in server.requests] == ["GET"]


def test_per_step_options_are_checked_and_name_the_scorer() -> None:
    with pytest.raises(ValidationError, match="endpoint must be 'pooling'"):
        RemoteRewardModelOptions(base_url="http://x:1/v1", endpoint="classify", per_step={})
    with pytest.raises(ValidationError, match="per_step and per_turn cannot be combined"):
        RemoteRewardModelOptions(base_url="http://x:1/v1", per_step={}, per_turn=True)
    with pytest.raises(ValidationError, match="aggregate"):
        RemoteRewardModelOptions(base_url="http://x:1/v1", per_step={"aggregate": "max"})
    plain = RemoteRewardModel("rm", RemoteRewardModelOptions(base_url="http://x:1/v1"))
    stepped = RemoteRewardModel("rm", RemoteRewardModelOptions(base_url="http://x:1/v1", per_step={}))
    other = RemoteRewardModel(
        "rm", RemoteRewardModelOptions(base_url="http://x:1/v1", per_step={"aggregate": "last"})
    )
    assert len({plain.fingerprint, stepped.fingerprint, other.fingerprint}) == 3
    # The options' dump of a reward without per_step is what it was before per_step existed.
    assert "per_step" not in plain.options.model_dump_json()
