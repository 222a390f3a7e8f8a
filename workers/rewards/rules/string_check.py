"""The ``string_check`` reward: OpenAI's string check grader, applied to a completion and a reference.

``eq``/``ne`` compare the completion with the reference exactly; ``like``/``ilike`` check that the
completion contains the reference (case-sensitively / not). The value is 1.0 or 0.0. Semantics and
options are documented in ``docs/rewards-text.md``.
"""

from __future__ import annotations

from typing import Literal

from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.rules.reference import ReferenceOptions, ReferenceReward

Operation = Literal["eq", "ne", "like", "ilike"]


class StringCheckOptions(ReferenceOptions):
    """Options of ``string_check``."""

    operation: Operation = "eq"
    """``eq`` (default), ``ne``, ``like`` (contains, case-sensitive), ``ilike`` (contains, ignoring case)."""
    strip: bool = False
    """Strip leading and trailing whitespace from the completion and the reference before comparing."""


class StringCheckReward(ReferenceReward):
    """1.0 when the completion passes the string check against its reference, else 0.0."""

    kind = "string_check"
    Options = StringCheckOptions
    options: StringCheckOptions

    def score_pairs(self, completions: list[str], references: list[str]) -> list[Score]:
        return [self._check(text, reference) for text, reference in zip(completions, references, strict=True)]

    def _check(self, text: str, reference: str) -> Score:
        if self.options.strip:
            text, reference = text.strip(), reference.strip()
        return Score.ok(1.0 if check(self.options.operation, text, reference) else 0.0)


def check(operation: Operation, text: str, reference: str) -> bool:
    """Whether ``text`` passes ``operation`` against ``reference`` (``like`` is containment, no wildcards)."""
    if operation == "eq":
        return text == reference
    if operation == "ne":
        return text != reference
    if operation == "like":
        return reference in text
    return reference.casefold() in text.casefold()
