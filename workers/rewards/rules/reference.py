"""Rewards that compare a completion with a reference text: where the reference comes from, and the
skeleton that reads it for every sample.

:class:`ReferenceOptions` is a fixed ``reference`` string or a dataset column (``reference_column``,
default ``reference``). :class:`ReferenceReward` resolves each sample's reference — a sample without
one is ``unscorable``, one of the wrong type an ``error`` — and hands the rest to ``score_pairs`` as
one batch (``string_check``, ``text_similarity``, ``embedding_similarity``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field, model_validator

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Reward, RewardOptions, Score


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


class ReferenceReward(Reward):
    """A reward of (completion, reference) pairs; samples without a reference never reach the scorer."""

    Options: ClassVar[type[ReferenceOptions]] = ReferenceOptions
    options: ReferenceOptions

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        scores: dict[int, Score] = {}
        references: dict[int, str] = {}
        for i, sample in enumerate(samples):
            reference = self.options.reference_for(sample)
            if isinstance(reference, Score):
                scores[i] = reference
            else:
                references[i] = reference
        if references:
            completions = [samples[i].completion_text for i in references]
            scores.update(
                zip(references, self.score_pairs(completions, list(references.values())), strict=True)
            )
        return [scores[i] for i in range(len(samples))]

    @abstractmethod
    def score_pairs(self, completions: list[str], references: list[str]) -> list[Score]:
        """Score each completion against its reference; one Score per pair, in order."""
