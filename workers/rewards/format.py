"""The ``format`` reward: ms-swift's ``Format``, 1.0 when the completion matches a regular expression.

The default pattern is ms-swift 4.6's: a ``<think>…</think>`` block, optional whitespace, then an
``<answer>…</answer>`` block that ends the completion. The pattern is matched at the start of the
completion (``re.match``) with ms-swift's flags, ``re.DOTALL | re.MULTILINE``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import field_validator

from rewardq.schema import Sample
from rewardq.workers.rewards.base import Reward, RewardOptions, Score

SWIFT_PATTERN = r"^<think>.*?</think>\s*<answer>.*?</answer>(?![\s\S])"
FLAGS = re.DOTALL | re.MULTILINE


class FormatReward(Reward):
    """1.0 when the completion matches ``pattern`` from its start, else 0.0."""

    kind = "format"
    version = "1"

    class Options(RewardOptions):
        pattern: str = SWIFT_PATTERN

        @field_validator("pattern")
        @classmethod
        def _compiles(cls, pattern: str) -> str:
            try:
                re.compile(pattern, FLAGS)
            except re.error as e:
                raise ValueError(f"not a valid regular expression: {e}") from e
            return pattern

    options: Options

    def __init__(self, name: str, options: RewardOptions) -> None:
        super().__init__(name, options)
        self._pattern = re.compile(self.options.pattern, FLAGS)

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        return [Score.ok(1.0 if self._pattern.match(s.completion_text) else 0.0) for s in samples]
