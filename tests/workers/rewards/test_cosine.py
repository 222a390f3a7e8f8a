"""The ``cosine`` reward: accuracy shaped by completion length, with ms-swift's cosine."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.rules.cosine import CosineReward, cosine_value

Make = Callable[..., CosineReward]
RIGHT, WRONG = "So it is $\\boxed{4}$.", "So it is $\\boxed{5}$."


@pytest.fixture
def make() -> Iterator[Make]:
    made: list[CosineReward] = []

    def _make(**options: Any) -> CosineReward:
        reward = CosineReward("cosine", CosineReward.Options(**options))
        made.append(reward)
        return reward

    yield _make
    for reward in made:
        reward.close()


def sample(completion: str, length: int | None, solution: str | None = "4") -> Sample:
    columns: dict[str, Any] = {} if solution is None else {"solution": solution}
    if length is not None:
        columns["completion_ids"] = [0] * length
    return Sample(completion=completion, columns=columns)


def test_ends_of_the_curve(make: Make) -> None:
    samples = [sample(RIGHT, 0), sample(RIGHT, 512), sample(WRONG, 0), sample(WRONG, 512)]
    assert [s.value for s in make().score(samples)] == [1.0, 0.5, -0.5, 0.0]


def test_middle_and_beyond_max_len(make: Make) -> None:
    """Halfway is the mean of the ends; past max_len the cosine swings back (ms-swift does not cap)."""
    scores = make().score([sample(RIGHT, 256), sample(RIGHT, 1024), sample(WRONG, 768)])
    assert [s.value for s in scores] == pytest.approx([0.75, 1.0, -0.25])


def test_custom_values(make: Make) -> None:
    reward = make(cosine_max_len=100, cosine_min_len_value_correct=2.0, cosine_max_len_value_correct=1.0)
    (score,) = reward.score([sample(RIGHT, 25)])
    expected = 2.0 - (1 - math.cos(math.pi / 4)) / 2
    assert score.value == cosine_value(25, 100, 2.0, 1.0) == pytest.approx(expected)


def test_accuracy_that_cannot_score_keeps_its_status(make: Make) -> None:
    scores = make().score([sample(RIGHT, 10, solution=None), sample(RIGHT, 10, solution="words only")])
    assert [s.status for s in scores] == ["unscorable", "unscorable"]
    assert "no 'solution' column" in (scores[0].error or "")


def test_missing_token_ids_fail_alone(make: Make) -> None:
    scores = make().score([sample(RIGHT, None), sample(RIGHT, 0), sample(RIGHT, None, solution=None)])
    assert [s.status for s in scores] == ["error", "ok", "error"]
    assert "'completion_ids'" in (scores[0].error or "") and "'tokenizer'" in (scores[0].error or "")


def test_malformed_token_ids_fail_alone(make: Make) -> None:
    bad = Sample(completion=RIGHT, columns={"solution": "4", "completion_ids": "1 2 3"})
    scores = make().score([bad, sample(RIGHT, 0)])
    assert [(s.status, s.value) for s in scores] == [("error", None), ("ok", 1.0)]


def test_options() -> None:
    defaults = CosineReward.Options()
    assert (defaults.cosine_max_len, defaults.cosine_min_len_value_wrong) == (512, -0.5)
    assert defaults.tokenizer is None
    with pytest.raises(ValidationError, match="greater than 0"):
        CosineReward.Options(cosine_max_len=0)
    with pytest.raises(ValidationError, match="Extra inputs"):
        CosineReward.Options(max_len=10)  # type: ignore[call-arg]
