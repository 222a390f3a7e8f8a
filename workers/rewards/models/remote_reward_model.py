"""The ``remote_reward_model`` reward: a reward model served by ``vllm serve`` with its pooling runner.

Each sample is sent as a conversation (the prompt's messages, then the completion as the assistant's
turn) to vLLM's ``/classify`` route (sequence classifiers: ``*ForSequenceClassification`` reward models)
or ``/pooling`` (``*ForRewardModel`` / process reward models); the server renders it with the model's chat
template (or ``chat_template``) and the score is the head's output ``label`` of the last token, a raw
logit unless ``activation`` is set. Concurrency, retries, statuses, cache and audit are those of ``judge``.

With ``per_step``, the model is a process reward model served with vLLM's STEP pooling (``--pooler-config
'{"pooling_type": "STEP", "step_tag_id": ID}'``): the completion is split and tagged as
``process_reward_model`` does (:mod:`.steps`), sent to ``/pooling`` with ``task = "token_classify"``, and
the server returns one row of the head's outputs per step tag; each step's score is the probability of
``per_step.label`` among them, and the value is their aggregate. The step scores are the reply's ``raw``
(so the cache and the audit keep them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.judges.options import ServerOptions
from rewardq.workers.rewards.judges.remote import Request, SampleServerReward
from rewardq.workers.rewards.judges.results import Reading
from rewardq.workers.rewards.models.steps import (
    StepOptions,
    aggregate,
    softmax_label,
    split_steps,
    step_score,
    tagged_conversation,
)

STEP_POOLING_HINT = (
    "the server must return one row per step tag: serve the model with --pooler-config "
    '\'{"pooling_type": "STEP", "step_tag_id": <the tag\'s token id>}\''
)


class PerStepOptions(StepOptions):
    """``per_step``: how steps are made and scored, as ``process_reward_model``'s options say."""

    label: Annotated[int, Field(ge=0)] = 1
    """Which output at a step tag is the step's correctness (1 in Qwen2.5-Math-PRM's head)."""


class RemoteRewardModelOptions(ServerOptions):
    """Options of ``remote_reward_model``."""

    endpoint: Literal["classify", "pooling"] = "classify"
    """vLLM's route: ``classify`` for sequence classifiers, ``pooling`` for token-level reward models."""
    label: Annotated[int, Field(ge=0)] = 0
    """Which output of the head is the reward (0 for a one-logit reward model)."""
    activation: bool = False
    """Apply the head's activation (sigmoid/softmax) on the server; default: the raw logit."""
    chat_template: str | None = None
    """A Jinja chat template for the server to render with instead of the model's own."""
    truncate_prompt_tokens: Annotated[int, Field(ge=1)] | None = None
    """Keep only the last this many tokens (vLLM truncates); default: too long is an ``http_400`` error."""
    per_step: PerStepOptions | None = Field(default=None, exclude=True)
    """Score a process reward model step by step (a table: ``per_step = {}`` for the defaults); the
    endpoint is then ``pooling``. Left out of the options' dump, folded into the identity instead, so
    that adding it left the fingerprints of existing ``remote_reward_model`` rewards as they were."""

    @model_validator(mode="after")
    def _per_step_pools(self) -> RemoteRewardModelOptions:
        if self.per_step is not None and "endpoint" in self.model_fields_set and self.endpoint != "pooling":
            raise ValueError("per_step scores through vLLM's /pooling route: endpoint must be 'pooling'")
        if self.per_step is not None and self.per_turn:
            raise ValueError("per_step and per_turn cannot be combined: a score has steps or turns, not both")
        return self


class RemoteRewardModel(SampleServerReward):
    """The score a served reward model gives a (prompt, completion) conversation."""

    kind = "remote_reward_model"
    Options = RemoteRewardModelOptions
    options: RemoteRewardModelOptions

    def __init__(self, name: str, options: RemoteRewardModelOptions) -> None:
        super().__init__(name, options)
        self.path = "/pooling" if options.per_step is not None else f"/{options.endpoint}"
        self._params: dict[str, Any] = {"use_activation": options.activation}
        if options.per_step is not None:
            self._params["task"] = "token_classify"
        if options.chat_template is not None:
            self._params["chat_template"] = options.chat_template
        if options.truncate_prompt_tokens is not None:
            self._params["truncate_prompt_tokens"] = options.truncate_prompt_tokens

    def identity(self) -> dict[str, str]:
        identity = super().identity()
        if self.options.per_step is not None:
            identity["per_step"] = self.options.per_step.model_dump_json()
        return identity

    def prepare(self, sample: Sample) -> dict[str, Any] | Score:
        if self.options.per_step is None:
            return {"messages": conversation(sample), **self._params}
        built = tagged_conversation(sample, self.options.per_step)
        if isinstance(built, Score):
            return built
        prompt, completion, _ = built
        return {"messages": [*prompt, *completion], **self._params}

    def read(self, body: Any, request: Request) -> Reading:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            return Reading(None, "invalid_response: no data in the reply", _short(body))
        item = data[0]
        if self.options.per_step is not None:
            return self._read_steps(item.get("data"), body, self.options.per_step)
        output = item.get("probs", item.get("data"))
        if isinstance(output, list) and output and isinstance(output[-1], list):
            output = output[-1]  # token-level output: the last token's row
        label = self.options.label
        if not isinstance(output, list) or len(output) <= label or not isinstance(output[label], int | float):
            return Reading(None, f"invalid_response: no output {label} in the reply", _short(body))
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        tokens = usage.get("prompt_tokens")
        return Reading(float(output[label]), None, None, tokens if isinstance(tokens, int) else None)

    def _read_steps(self, rows: Any, body: Any, per_step: PerStepOptions) -> Reading:
        """One row per step tag: the step's probability of ``per_step.label`` (the server's softmax with
        ``activation``, else a softmax here over the raw logits); the steps go in ``raw``."""
        label = per_step.label
        if not isinstance(rows, list) or not rows:
            return Reading(None, "invalid_response: no step rows in the reply", _short(body))
        if not all(
            isinstance(r, list) and len(r) > label and all(isinstance(v, int | float) for v in r)
            for r in rows
        ):
            return Reading(None, f"invalid_response: a step row without output {label}", _short(body))
        values = [float(r[label]) if self.options.activation else softmax_label(r, label) for r in rows]
        tokens = body.get("usage", {}).get("prompt_tokens") if isinstance(body.get("usage"), dict) else None
        raw = json.dumps(values)
        return Reading(
            aggregate(values, per_step.aggregate), None, raw, tokens if isinstance(tokens, int) else None
        )

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        scores = super().score(samples)
        per_step = self.options.per_step
        if per_step is None:
            return scores
        out = []
        for sample, score in zip(samples, scores, strict=True):
            if score.status == "ok" and score.raw is not None:
                steps = split_steps(sample.completion_text, per_step.step_separator)
                score = step_score(
                    json.loads(score.raw),
                    steps,
                    per_step.aggregate,
                    raw=score.raw,
                    meta=score.meta,
                    mismatch=STEP_POOLING_HINT,
                )
            out.append(score)
        return out

    def reader_identity(self) -> dict[str, Any]:
        if self.options.per_step is not None:
            return {"label": self.options.per_step.label, "activation": self.options.activation, "steps": 1}
        return {"label": self.options.label}


def conversation(sample: Sample) -> list[dict[str, Any]]:
    """The prompt's messages (a string prompt is the user's turn), then the completion as the assistant's."""
    messages: list[dict[str, Any]] = []
    if isinstance(sample.prompt, str):
        messages.append({"role": "user", "content": sample.prompt})
    elif sample.prompt is not None:
        messages.extend(dict(m) for m in sample.prompt)
    if isinstance(sample.completion, str):
        messages.append({"role": "assistant", "content": sample.completion})
    else:
        messages.extend(dict(m) for m in sample.completion)
    return messages


def _short(body: Any) -> str:
    return repr(body)[:2000]
