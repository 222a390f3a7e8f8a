"""The ``cosine`` reward: ms-swift's ``CosineReward``, accuracy shaped by length along a cosine.

With ``L`` the completion's length in tokens (see :mod:`rewardq.workers.rewards.rules.tokens`) and
``T = cosine_max_len``, the reward moves from its zero-length value ``v0`` to its ``T``-token value
``vT`` as ``v0 - (v0 - vT) * (1 - cos(pi * L / T)) / 2``. A correct answer (``accuracy`` 1.0) goes
from ``cosine_min_len_value_correct`` to ``cosine_max_len_value_correct`` (short right answers score
highest), a wrong one from ``cosine_min_len_value_wrong`` to ``cosine_max_len_value_wrong`` (long wrong
answers are penalized least). As in ms-swift, ``L`` is not capped at ``T``: past it the cosine swings
back. A sample ``accuracy`` cannot score (unscorable, timeout, error) keeps that status here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import Field, PositiveInt

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Reward, RewardOptions, Score
from rewardq.workers.rewards.rules.accuracy import AccuracyReward
from rewardq.workers.rewards.rules.tokens import TokenCounter, TokenCountError


class CosineReward(Reward):
    """The ``accuracy`` of a completion, scaled by its length in tokens along a half cosine."""

    kind = "cosine"
    version = "1"
    timeout_default = AccuracyReward.timeout_default

    class Options(RewardOptions):
        cosine_min_len_value_wrong: float = -0.5
        cosine_max_len_value_wrong: float = 0.0
        cosine_min_len_value_correct: float = 1.0
        cosine_max_len_value_correct: float = 0.5
        cosine_max_len: PositiveInt = 512
        tokenizer: str | None = None
        timeout_seconds: int = Field(
            default=5, ge=1, description="the accuracy check's math-verify time limit"
        )

    options: Options

    def __init__(self, name: str, options: RewardOptions) -> None:
        super().__init__(name, options)
        self._tokens = TokenCounter(self.options.tokenizer)
        accuracy = AccuracyReward.Options(timeout_seconds=self.options.timeout_seconds)
        self._accuracy = AccuracyReward(name, accuracy)

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        lengths: dict[int, int] = {}
        scores: list[Score | None] = []
        for i, sample in enumerate(samples):
            try:
                lengths[i] = self._tokens.count(sample)
                scores.append(None)
            except TokenCountError as e:
                scores.append(Score.failed(str(e)))
        accuracy = self._accuracy.score([samples[i] for i in lengths])
        for (i, length), correct in zip(lengths.items(), accuracy, strict=True):
            scores[i] = self._shape(correct, length)
        return [score for score in scores if score is not None]

    def _shape(self, accuracy: Score, length: int) -> Score:
        if accuracy.status != "ok" or accuracy.value is None:
            return accuracy
        o = self.options
        if accuracy.value >= 1.0:
            at_zero, at_max = o.cosine_min_len_value_correct, o.cosine_max_len_value_correct
        else:
            at_zero, at_max = o.cosine_min_len_value_wrong, o.cosine_max_len_value_wrong
        return Score.ok(cosine_value(length, o.cosine_max_len, at_zero, at_max))


def cosine_value(length: int, max_len: int, at_zero: float, at_max: float) -> float:
    """ms-swift's ``cosfn``: ``at_zero`` for an empty completion, ``at_max`` at ``max_len`` tokens."""
    return at_zero - (at_zero - at_max) * (1 - math.cos(length * math.pi / max_len)) / 2
