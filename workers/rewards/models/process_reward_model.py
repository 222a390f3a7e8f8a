"""The ``process_reward_model`` reward: a token-classification model scores each step of a completion.

As Qwen2.5-Math-PRM is used (its model card): the completion is split into steps, ``step_tag`` follows
each (:mod:`.steps`), the conversation is rendered with the model's chat template, and each step's score
is the probability of ``label`` (softmax over the head's labels) at its tag token. The value is the
steps' ``aggregate``; the steps and where each ends in the completion go with it. Loading, token-budget
batching, GPU pinning, coalescing and truncation are ``reward_model``'s. Options and semantics are in
``docs/rewards-models.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from rewardq.wire.errors import RewardSetupError
from rewardq.wire.schema import ChatMessage, Sample
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.models.chat_tokens import tokenize_conversations
from rewardq.workers.rewards.models.reward_model import (
    BatchedModelOptions,
    RewardModelReward,
    encoded_meta,
)
from rewardq.workers.rewards.models.steps import StepOptions, Steps, step_score, tagged_conversation

if TYPE_CHECKING:
    from rewardq.workers.process.resources import WorkerResources
    from rewardq.workers.rewards.models.classifier import Classifier


class ProcessRewardModelOptions(BatchedModelOptions, StepOptions):
    """Options of ``process_reward_model``: the model and its batching, the steps, and ``label``."""

    label: int = Field(default=1, ge=0)
    """The label whose probability is a step's score (1: "correct" in Qwen2.5-Math-PRM's head)."""


class ProcessRewardModel(RewardModelReward):
    """Per step, the probability of ``label`` at the step's tag; the value is their aggregate."""

    kind = "process_reward_model"
    Options = ProcessRewardModelOptions  # type: ignore[assignment]  # a subclass of the options of reward_model's base
    options: ProcessRewardModelOptions  # type: ignore[assignment]
    head: ClassVar[Literal["sequence", "token"]] = "token"
    turns_allowed: ClassVar[bool] = False  # its steps are its own breakdown of one completion

    _tag_id: int = -1

    def setup(self, resources: WorkerResources) -> None:
        super().setup(resources)
        tag = self.options.step_tag
        ids = self._tokenizer(tag, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise RewardSetupError(
                f"reward {self.name!r}: step_tag {tag!r} is {len(ids)} tokens for the tokenizer of model "
                f"{self.options.model}; it must be one token (a special token of the tokenizer)"
            )
        self._tag_id = int(ids[0])

    def _check_head(self, classifier: Classifier) -> None:
        labels, label = classifier.num_labels, self.options.label
        if labels < 2 or label >= labels:
            raise RewardSetupError(
                f"reward {self.name!r}: model {self.options.model} has {labels} label(s); a process reward "
                f"model's head needs at least 2, and label {label} among them"
            )

    @property
    def _label(self) -> int:
        return self.options.label

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        classifier = self._ready()
        scores: list[Score | None] = [None] * len(samples)
        conversations: list[tuple[list[ChatMessage], list[ChatMessage]]] = []
        steps: list[Steps] = []
        where: list[int] = []
        for i, sample in enumerate(samples):
            built = tagged_conversation(sample, self.options)
            if isinstance(built, Score):
                scores[i] = built
                continue
            conversations.append(built[:2])
            steps.append(built[2])
            where.append(i)
        tokens = tokenize_conversations(self._tokenizer, conversations)

        def forward(scorable: list[int], rows: list[list[int]], passes: list[list[int]]) -> list[list[float]]:
            positions = [
                self._tag_positions(row, len(steps[k].texts)) for k, row in zip(scorable, rows, strict=True)
            ]
            return classifier.run_token_passes(rows, passes, positions, self._label)

        encoded, probabilities = self._fit_and_run(tokens, forward)
        for k, e in enumerate(encoded):
            if k in probabilities:
                scored = step_score(probabilities[k], steps[k], self.options.aggregate, meta=encoded_meta(e))
            else:
                problem = e.problem or "not scorable"
                scored = Score.unscorable(f"{problem}: no step can be scored", meta=encoded_meta(e))
            scores[where[k]] = scored
        return [s if s is not None else Score.failed("internal error: no score") for s in scores]

    def _tag_positions(self, row: list[int], steps: int) -> list[int]:
        """Where the step tags are in a model input: the last ``steps`` tag tokens (a tag the prompt holds
        comes before the completion's)."""
        found = [j for j, token in enumerate(row) if token == self._tag_id]
        return found[-steps:]
