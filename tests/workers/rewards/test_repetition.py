"""The ``repetition`` reward: ms-swift's n-gram repetition penalty."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.rules.repetition import RepetitionReward, repetition_penalty


def values(completions: list[str], **options: float) -> list[float | None]:
    reward = RepetitionReward("repetition", RepetitionReward.Options(**options))  # type: ignore[arg-type]
    return [s.value for s in reward.score([Sample(completion=c) for c in completions])]


def test_values() -> None:
    # "a b c a b c" has the 3-grams abc, bca, cab, abc: 3 distinct of 4.
    assert values(["", "two words", "no repeats at all", "a b c a b c"]) == [0.0, 0.0, 0.0, -0.25]


def test_case_and_whitespace_are_ignored() -> None:
    assert values(["The THE the", "the\nthe\tthe"], repetition_n_grams=1) == pytest.approx([-2 / 3, -2 / 3])


def test_penalty_scales() -> None:
    assert values(["x x x x x"], repetition_n_grams=2, repetition_max_penalty=-0.5) == [-0.375]


def test_fully_repeated_text_approaches_the_max_penalty() -> None:
    assert repetition_penalty("la " * 1000, 3, -1.0) == pytest.approx(-1.0, abs=1e-2)


def test_options() -> None:
    defaults = RepetitionReward.Options()
    assert (defaults.repetition_n_grams, defaults.repetition_max_penalty) == (3, -1.0)
    with pytest.raises(ValidationError, match="greater than 0"):
        RepetitionReward.Options(repetition_n_grams=0)
    with pytest.raises(ValidationError, match="less than or equal to 0"):
        RepetitionReward.Options(repetition_max_penalty=0.5)
    with pytest.raises(ValidationError, match="Extra inputs"):
        RepetitionReward.Options(ngram_size=2)  # type: ignore[call-arg]
