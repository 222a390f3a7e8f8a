"""The ``repetition`` reward: ms-swift's ``RepetitionPenalty``, a penalty for repeated word n-grams.

The completion is lower-cased and split on whitespace; with ``u`` distinct n-grams among ``t``, the
reward is ``(1 - u / t) * repetition_max_penalty``: 0 for no repetition, towards the maximum
penalty as one n-gram fills the text. A completion of fewer than ``repetition_n_grams`` words gets 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, PositiveInt

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Reward, RewardOptions, Score


class RepetitionReward(Reward):
    """A value between ``repetition_max_penalty`` and 0, lower for more repeated n-grams."""

    kind = "repetition"
    version = "1"

    class Options(RewardOptions):
        repetition_n_grams: PositiveInt = 3
        repetition_max_penalty: float = Field(
            default=-1.0, le=0, description="the reward of a fully repeated text"
        )

    options: Options

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        n, penalty = self.options.repetition_n_grams, self.options.repetition_max_penalty
        return [Score.ok(repetition_penalty(s.completion_text, n, penalty)) for s in samples]


def repetition_penalty(text: str, n: int, max_penalty: float) -> float:
    """ms-swift's value: the share of repeated word n-grams times ``max_penalty``."""
    words = text.lower().split()
    if len(words) < n:
        return 0.0
    ngrams = list(zip(*[words[i:] for i in range(n)], strict=False))
    return (1 - len(set(ngrams)) / len(ngrams)) * max_penalty
