"""The ``soft_overlong`` reward: ms-swift's ``SoftOverlong``, DAPO's soft penalty for long completions.

With ``L`` the completion's length in tokens (see :mod:`rewardq.workers.rewards.rules.tokens`), the reward
is ``min(-(L - (soft_max_length - soft_cache_length)) / soft_cache_length, 0)``: 0 up to
``soft_max_length - soft_cache_length`` tokens, falling linearly to -1 at ``soft_max_length``, and, as
in ms-swift, on below -1 past it (no floor).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import PositiveInt, model_validator

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Reward, RewardOptions, Score
from rewardq.workers.rewards.rules.tokens import TokenCounter, TokenCountError


class SoftOverlongReward(Reward):
    """0 up to ``soft_max_length - soft_cache_length`` tokens, negative beyond."""

    kind = "soft_overlong"
    version = "1"

    class Options(RewardOptions):
        soft_max_length: PositiveInt = 512
        # ms-swift has no default (it refuses to start without one); 128 lets the kind run with no file.
        soft_cache_length: PositiveInt = 128
        tokenizer: str | None = None

        @model_validator(mode="after")
        def _cache_within_max(self) -> SoftOverlongReward.Options:
            if self.soft_cache_length >= self.soft_max_length:
                raise ValueError(
                    f"soft_cache_length ({self.soft_cache_length}) must be less than "
                    f"soft_max_length ({self.soft_max_length})"
                )
            return self

    options: Options

    def __init__(self, name: str, options: RewardOptions) -> None:
        super().__init__(name, options)
        self._tokens = TokenCounter(self.options.tokenizer)

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        return [self._score_one(s) for s in samples]

    def _score_one(self, sample: Sample) -> Score:
        try:
            length = self._tokens.count(sample)
        except TokenCountError as e:
            return Score.failed(str(e))
        cache = self.options.soft_cache_length
        exceed = length - (self.options.soft_max_length - cache)
        return Score.ok(min(-exceed / cache, 0))
