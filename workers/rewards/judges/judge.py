"""The ``judge`` reward: a generative judge behind an OpenAI-compatible server (vLLM), asked concurrently.

Each sample becomes a chat request (``system`` + the rendered ``template``); the verdict is read from
the judge's reply only (see :mod:`rewardq.workers.rewards.judges.replies`). Options, parsing rules, statuses,
the cache and the audit are documented in ``docs/rewards-judges.md``.
"""

from __future__ import annotations

from typing import Any

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.judges.options import JudgeOptions
from rewardq.workers.rewards.judges.prompts import TemplateFieldError, render, template_hash
from rewardq.workers.rewards.judges.remote import ServerReward
from rewardq.workers.rewards.judges.replies import ReplyReader
from rewardq.workers.rewards.judges.results import Reading


class JudgeReward(ServerReward):
    """A reward read from a generative judge's reply."""

    kind = "judge"
    Options = JudgeOptions
    options: JudgeOptions
    path = "chat/completions"

    def __init__(self, name: str, options: JudgeOptions) -> None:
        super().__init__(name, options)
        self.max_reasks = options.reask
        self.template_hash = template_hash((options.system or "") + "\x00" + options.template)
        self._reader = ReplyReader(options)
        structured = options.structured_output()
        self._params: dict[str, Any] = {
            **options.extra_body,
            "temperature": options.temperature,
            "top_p": options.top_p,
            "n": options.n,
            "max_tokens": options.max_tokens,
        }
        if options.seed is not None:
            self._params["seed"] = options.seed
        if structured is not None:
            self._params["structured_outputs"] = structured.request()

    def prepare(self, sample: Sample) -> dict[str, Any] | Score:
        try:
            user = render(self.options.template, sample, self.options.reference_column)
        except TemplateFieldError as e:
            return Score.failed(str(e))
        messages = [{"role": "user", "content": user}]
        if self.options.system is not None:
            messages.insert(0, {"role": "system", "content": self.options.system})
        return {"messages": messages, **self._params}

    def reask_body(self, body: dict[str, Any], reask: int) -> dict[str, Any]:
        return {**body, "seed": body["seed"] + reask} if "seed" in body else body

    def read(self, body: Any) -> Reading:
        return self._reader.read(body)

    def reader_identity(self) -> dict[str, Any]:
        reader = self._reader
        return {
            "parser": reader.parser,
            "labels": reader.labels,
            "passing": sorted(reader.passing),
            "score_range": reader.score_range,
            "field": reader.structured.field if reader.structured is not None else None,
        }
