"""The ``remote_reward_model`` reward: a reward model served by ``vllm serve`` with its pooling runner.

Each sample is sent as a conversation (the prompt's messages, then the completion as the assistant's
turn) to vLLM's ``/classify`` route (sequence classifiers: ``*ForSequenceClassification`` reward models)
or ``/pooling`` (``*ForRewardModel`` / process reward models); the server renders it with the model's chat
template (or ``chat_template``) and the score is the head's output ``label`` of the last token, a raw
logit unless ``activation`` is set. Concurrency, retries, statuses, cache and audit are those of ``judge``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.judges.options import ServerOptions
from rewardq.workers.rewards.judges.remote import Request, SampleServerReward
from rewardq.workers.rewards.judges.results import Reading


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


class RemoteRewardModel(SampleServerReward):
    """The score a served reward model gives a (prompt, completion) conversation."""

    kind = "remote_reward_model"
    Options = RemoteRewardModelOptions
    options: RemoteRewardModelOptions

    def __init__(self, name: str, options: RemoteRewardModelOptions) -> None:
        super().__init__(name, options)
        self.path = f"/{options.endpoint}"
        self._params: dict[str, Any] = {"use_activation": options.activation}
        if options.chat_template is not None:
            self._params["chat_template"] = options.chat_template
        if options.truncate_prompt_tokens is not None:
            self._params["truncate_prompt_tokens"] = options.truncate_prompt_tokens

    def prepare(self, sample: Sample) -> dict[str, Any] | Score:
        return {"messages": conversation(sample), **self._params}

    def read(self, body: Any, request: Request) -> Reading:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            return Reading(None, "invalid_response: no data in the reply", _short(body))
        item = data[0]
        output = item.get("probs", item.get("data"))
        if isinstance(output, list) and output and isinstance(output[-1], list):
            output = output[-1]  # token-level output: the last token's row
        label = self.options.label
        if not isinstance(output, list) or len(output) <= label or not isinstance(output[label], int | float):
            return Reading(None, f"invalid_response: no output {label} in the reply", _short(body))
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        tokens = usage.get("prompt_tokens")
        return Reading(float(output[label]), None, None, tokens if isinstance(tokens, int) else None)

    def reader_identity(self) -> dict[str, Any]:
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
