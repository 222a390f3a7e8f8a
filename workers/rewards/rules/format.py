"""The ``format`` reward: ms-swift's ``Format``, 1.0 when the completion matches a regular expression.

The default pattern is ms-swift 4.6's: a ``<think>…</think>`` block, optional whitespace, then an
``<answer>…</answer>`` block that ends the completion. The pattern is matched at the start of the
completion (``re.match``) with ms-swift's flags, ``re.DOTALL | re.MULTILINE``.

The default pattern backtracks quadratically on hostile completions (``"<think>" +
"</think>\n<answer>" * k`` took 17 s at 200 KB), so it is decided by :func:`swift_format`, a linear scan
with the same answers; custom patterns run as given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from pydantic import field_validator

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Reward, RewardOptions, Score

SWIFT_PATTERN = r"^<think>.*?</think>\s*<answer>.*?</answer>(?![\s\S])"
FLAGS = re.DOTALL | re.MULTILINE
_HINGE = re.compile(r"</think>\s*<answer>")


def swift_format(text: str) -> bool:
    """Whether ``text`` matches SWIFT_PATTERN, in linear time.

    It matches iff the text starts with ``<think>``, ends with ``</answer>``, and some
    ``</think>\\s*<answer>`` lies between them. Occurrences of that hinge cannot overlap, so the first
    one after ``<think>`` ends earliest: checking it alone decides.
    """
    if not (text.startswith("<think>") and text.endswith("</answer>")):
        return False
    hinge = _HINGE.search(text, len("<think>"))
    return hinge is not None and hinge.end() <= len(text) - len("</answer>")


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
        if self.options.pattern == SWIFT_PATTERN:
            self._matches: Callable[[str], object] = swift_format
        else:
            self._matches = re.compile(self.options.pattern, FLAGS).match

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        return [Score.ok(1.0 if self._matches(s.completion_text) else 0.0) for s in samples]
