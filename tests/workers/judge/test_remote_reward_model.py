"""``remote_reward_model`` against the fake server: the conversation sent, the score read, the cache."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rewardq.wire.schema import Sample
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.models.remote_reward_model import RemoteRewardModel, RemoteRewardModelOptions
from tests.fake_openai import FakeOpenAI, Request, classifier, failing, verdict


def length_score(request: Request) -> float:
    return float(len(request.body["messages"][-1]["content"]))


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(classifier(length_score)) as fake:
        yield fake


def reward_model(resources: WorkerResources, url: str, **options: Any) -> RemoteRewardModel:
    reward = RemoteRewardModel("rm", RemoteRewardModelOptions(base_url=url, **options))
    reward.setup(resources)
    return reward


def test_classify_sends_the_conversation_and_reads_the_logit(
    resources: WorkerResources, server: FakeOpenAI
) -> None:
    reward = reward_model(resources, server.base_url)
    samples = [
        Sample(prompt="2+2?", completion="four"),
        Sample(
            prompt=[{"role": "user", "content": "hi"}], completion=[{"role": "assistant", "content": "hey"}]
        ),
    ]
    scores = reward.score(samples)
    assert [s.value for s in scores] == [4.0, 3.0]
    assert scores[0].meta is not None and scores[0].meta.prompt_tokens == 17
    first, second = server.requests[-2:]
    assert first.path == "/classify"  # from the server root, not under /v1
    assert first.body == {
        "model": "fake-judge",
        "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "four"}],
        "use_activation": False,
    }
    assert second.body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hey"},
    ]


def test_pooling_reads_the_last_tokens_output(resources: WorkerResources, server: FakeOpenAI) -> None:
    reward = reward_model(resources, server.base_url, endpoint="pooling", chat_template="{{ messages }}")
    assert [s.value for s in reward.score([Sample(prompt="p", completion="abc")])] == [3.0]
    assert server.requests[-1].path == "/pooling"
    assert server.requests[-1].body["chat_template"] == "{{ messages }}"


def test_identical_samples_are_scored_once_and_then_cached(
    resources: WorkerResources, server: FakeOpenAI
) -> None:
    reward = reward_model(resources, server.base_url)
    batch = [Sample(prompt="p", completion=c) for c in ("aa", "b", "aa")]
    reward.score(batch)
    again = reward.score(batch)
    assert len([r for r in server.requests if r.path == "/classify"]) == 2
    assert [s.value for s in again] == [2.0, 1.0, 2.0]
    assert all(s.meta is not None and s.meta.cache_hit for s in again)


def test_retries_and_errors_are_those_of_the_judge(resources: WorkerResources) -> None:
    with FakeOpenAI(failing(1, 502, classifier(length_score))) as flaky:
        [score] = reward_model(resources, flaky.base_url).score([Sample(prompt="p", completion="xyz")])
    assert score.value == 3.0 and score.meta is not None and score.meta.http_attempts == 2
    with FakeOpenAI(verdict("[[3]]")) as chat_only:  # answers /classify with a chat completion
        [score] = reward_model(resources, chat_only.base_url).score([Sample(prompt="p", completion="x")])
    assert score.status == "error" and (score.error or "").startswith("invalid_response")


def test_a_label_beyond_the_head_is_an_error(resources: WorkerResources, server: FakeOpenAI) -> None:
    [score] = reward_model(resources, server.base_url, label=3).score([Sample(prompt="p", completion="x")])
    assert score.status == "error" and "no output 3" in (score.error or "")
