"""Fixtures of the judge tests: a worker process's resources and judges (of samples or of groups) set up
against a fake server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rewardq import Settings
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.rewards.judges.judge import JudgeReward
from rewardq.workers.rewards.judges.options import JudgeOptions
from rewardq.workers.rewards.judges.remote import ServerReward
from tests.fake_openai import FakeOpenAI


@pytest.fixture
def resources() -> Iterator[WorkerResources]:
    """One worker process's resources (embedded: the in-process cache)."""
    res = WorkerResources(Settings.from_env({}))
    try:
        yield res
    finally:
        res.close()


@pytest.fixture
def make_judge(resources: WorkerResources) -> Callable[..., JudgeReward]:
    """``make_judge(server_or_url, **options)`` → a judge set up in ``resources``."""

    def make(server: FakeOpenAI | str | list[str], name: str = "judge", **options: Any) -> JudgeReward:
        url = server.base_url if isinstance(server, FakeOpenAI) else server
        options.setdefault("template", "Grade: {completion}")
        options.setdefault("score_range", (0, 10))
        reward = JudgeReward(name, JudgeOptions(base_url=url, **options))
        reward.setup(resources)
        return reward

    return make


@pytest.fixture
def make_reward(resources: WorkerResources) -> Callable[..., Any]:
    """``make_reward(Kind, server, **options)`` → a server reward of that kind set up in ``resources``."""

    def make(kind: Any, server: FakeOpenAI, **options: Any) -> ServerReward:
        reward = kind(kind.kind, kind.Options(base_url=server.base_url, **options))
        reward.setup(resources)
        return reward

    return make
