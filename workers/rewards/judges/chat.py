"""The base of the reward kinds asked of a chat judge (``judge``, ``pairwise_judge``, ``group_judge``): the
request a rendered template becomes (system message, sampling parameters, structured output) and its re-asks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.judges.options import ChatOptions
from rewardq.workers.rewards.judges.prompts import TemplateFieldError, render, template_hash
from rewardq.workers.rewards.judges.remote import ServerReward


class ChatReward(ServerReward):
    """A reward read from a chat judge's replies (``chat/completions``)."""

    options: ChatOptions
    path = "chat/completions"

    def __init__(self, name: str, options: ChatOptions) -> None:
        super().__init__(name, options)
        self.max_reasks = options.reask
        self.template_hash = template_hash((options.system or "") + "\x00" + options.template)
        structured = options.structured_output()
        self.params: dict[str, Any] = {
            **options.extra_body,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "max_tokens": options.max_tokens,
        }
        if options.seed is not None:
            self.params["seed"] = options.seed
        if structured is not None:
            self.params["structured_outputs"] = structured.request()

    def chat(self, sample: Sample, filled: Mapping[str, str] | None = None) -> dict[str, Any] | Score:
        """The body of a request whose user message is the template filled from ``sample`` (and the fields
        already ``filled``), or the error Score of a field the sample lacks."""
        try:
            user = render(self.options.template, sample, self.options.reference_column, filled)
        except TemplateFieldError as e:
            return Score.failed(str(e))
        messages = [{"role": "user", "content": user}]
        if self.options.system is not None:
            messages.insert(0, {"role": "system", "content": self.options.system})
        return {"messages": messages, **self.params}

    def reask_body(self, body: dict[str, Any], reask: int) -> dict[str, Any]:
        return {**body, "seed": body["seed"] + reask} if "seed" in body else body
