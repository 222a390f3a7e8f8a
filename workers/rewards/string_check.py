"""The ``string_check`` reward: OpenAI's string check grader, applied to a completion and a reference.

``eq``/``ne`` compare the completion with the reference exactly; ``like``/``ilike`` check that the
completion contains the reference (case-sensitively / not). The value is 1.0 or 0.0. Semantics and
options are documented in ``docs/rewards-text.md``.

This module also owns :class:`ReferenceOptions`, the reference-text options shared with the
``text_similarity`` kind: a fixed ``reference`` string or a dataset column (``reference_column``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from rewardq.schema import Sample
from rewardq.workers.rewards.base import Reward, RewardOptions, Score

Operation = Literal["eq", "ne", "like", "ilike"]


class ReferenceOptions(RewardOptions):
    """Where a sample's reference text comes from: a fixed string, or else a dataset column."""

    reference: str | None = None
    """A fixed reference for every sample; when set, no column is read."""
    reference_column: str = Field(default="reference", min_length=1)
    """The dataset column holding each sample's reference (used when ``reference`` is not set)."""

    @model_validator(mode="after")
    def _one_source(self) -> ReferenceOptions:
        if self.reference is not None and "reference_column" in self.model_fields_set:
            raise ValueError("set either `reference` (a fixed string) or `reference_column`, not both")
        return self

    def reference_for(self, sample: Sample) -> str | Score:
        """The sample's reference text, or the non-``ok`` :class:`Score` to give it when there is none."""
        if self.reference is not None:
            return self.reference
        column = self.reference_column
        if column not in sample.columns or sample.columns[column] is None:
            return Score.unscorable(f"no reference: column {column!r} is missing or null")
        value = sample.columns[column]
        if isinstance(value, str):
            return value
        if isinstance(value, int | float):  # bool is an int
            return str(value)
        return Score.failed(f"column {column!r} holds a {type(value).__name__}, expected a string or number")


class StringCheckOptions(ReferenceOptions):
    """Options of ``string_check``."""

    operation: Operation = "eq"
    """``eq`` (default), ``ne``, ``like`` (contains, case-sensitive), ``ilike`` (contains, ignoring case)."""
    strip: bool = False
    """Strip leading and trailing whitespace from the completion and the reference before comparing."""


class StringCheckReward(Reward):
    """1.0 when the completion passes the string check against its reference, else 0.0."""

    kind = "string_check"
    Options = StringCheckOptions
    options: StringCheckOptions

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        return [self._score_one(sample) for sample in samples]

    def _score_one(self, sample: Sample) -> Score:
        reference = self.options.reference_for(sample)
        if isinstance(reference, Score):
            return reference
        text = sample.completion_text
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
