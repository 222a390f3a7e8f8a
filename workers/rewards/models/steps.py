"""Process reward models' steps: a completion split into steps, tagged for the model, scores aggregated.

As Qwen2.5-Math-PRM's model card scores a solution: the completion is split on ``step_separator``, each
step is followed by ``step_tag`` (the separators give way to the tags), and the conversation is the
system prompt, the user's query and that tagged text as the assistant's turn, rendered with the model's
chat template. A step's score is the probability of the positive label at its tag; the sample's value is
their ``aggregate``. Shared by ``process_reward_model`` (a local model) and ``remote_reward_model``'s
``per_step`` mode (vLLM's STEP pooling). Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rewardq.wire.schema import ChatMessage, Sample
from rewardq.workers.rewards.base import Score, ScoreMeta
from rewardq.workers.rewards.models.chat_tokens import messages

Aggregate = Literal["min", "last", "mean", "prod"]
QWEN_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
"""The system prompt of Qwen2.5-Math-PRM's model card."""


class StepOptions(BaseModel):
    """How a completion becomes tagged steps and how step scores become the value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step_separator: str = Field(default="\n\n", min_length=1)
    """What separates two steps in the completion (Qwen2.5-Math-PRM: a blank line)."""
    step_tag: str = Field(default="<extra_0>", min_length=1)
    """The token appended to each step, at which the model scores it (one token of the tokenizer)."""
    system_prompt: str | None = QWEN_PRM_SYSTEM
    """The system turn put before a prompt that has none (None: no system turn)."""
    aggregate: Aggregate = "min"
    """The value over the step scores: ``min``, ``last``, ``mean`` or ``prod``."""


@dataclass(frozen=True)
class Steps:
    """A completion's steps and, for each, the character offset in the completion where it ends."""

    texts: tuple[str, ...]
    ends: tuple[int, ...]


def split_steps(text: str, separator: str) -> Steps:
    """The non-blank pieces of ``text`` between separators, with where each ends in ``text``."""
    texts: list[str] = []
    ends: list[int] = []
    start = 0
    for piece in text.split(separator):
        if piece.strip():
            texts.append(piece)
            ends.append(start + len(piece))
        start += len(piece) + len(separator)
    return Steps(tuple(texts), tuple(ends))


def tagged_conversation(
    sample: Sample, options: StepOptions
) -> tuple[list[ChatMessage], list[ChatMessage], Steps] | Score:
    """The prompt's messages (the system prompt first where it has none), the assistant's tagged steps,
    and the steps; or the Score of a completion that cannot be scored by steps."""
    text = sample.completion_text
    if options.step_tag in text:
        return Score.unscorable(
            f"the completion contains the step tag {options.step_tag!r} itself, so its steps are ambiguous"
        )
    steps = split_steps(text, options.step_separator)
    if not steps.texts:
        return Score.unscorable("the completion has no step: it is empty or blank")
    prompt, _ = messages(sample)
    if options.system_prompt is not None and not any(m.get("role") == "system" for m in prompt):
        prompt.insert(0, {"role": "system", "content": options.system_prompt})
    content = "".join(step + options.step_tag for step in steps.texts)
    return prompt, [{"role": "assistant", "content": content}], steps


def aggregate(values: Sequence[float], how: Aggregate) -> float:
    """``values`` (one or more step scores) reduced as ``how`` says."""
    if how == "min":
        return min(values)
    if how == "last":
        return values[-1]
    if how == "mean":
        return math.fsum(values) / len(values)
    return math.prod(values)


def step_score(
    probabilities: Sequence[float],
    steps: Steps,
    how: Aggregate,
    *,
    raw: str | None = None,
    meta: ScoreMeta | None = None,
    mismatch: str = "the model input did not hold one step tag per step",
) -> Score:
    """The sample's Score from one probability per step: their aggregate, the steps and their ends; an
    error saying ``mismatch`` when there is not one probability per step."""
    if len(probabilities) != len(steps.texts):
        return Score.failed(
            f"{len(probabilities)} step scores for {len(steps.texts)} steps: {mismatch}",
            raw=raw,
            meta=meta,
        )
    if not all(math.isfinite(p) for p in probabilities):
        return Score.failed(f"the model returned a non-finite step score ({list(probabilities)})", raw, meta)
    values = tuple(float(p) for p in probabilities)
    return Score.ok(aggregate(values, how), raw, meta, steps=values, step_ends=steps.ends)


def softmax_label(logits: Sequence[float], label: int) -> float:
    """The probability of ``label`` under a softmax over ``logits`` (computed stably)."""
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    return exps[label] / math.fsum(exps)
