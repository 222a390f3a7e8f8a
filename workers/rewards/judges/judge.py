"""The ``judge`` reward: a generative judge behind an OpenAI-compatible server (vLLM), asked concurrently.

Each sample becomes a chat request (``system`` + the rendered ``template``); the verdict is read from
the judge's reply only (see :mod:`rewardq.workers.rewards.judges.replies`). Options, parsing rules, statuses,
the cache and the audit are documented in ``docs/rewards-judges.md``.
"""

from __future__ import annotations

from typing import Any

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.judges.chat import ChatReward
from rewardq.workers.rewards.judges.options import JudgeOptions
from rewardq.workers.rewards.judges.remote import Request, SampleServerReward
from rewardq.workers.rewards.judges.replies import ReplyReader
from rewardq.workers.rewards.judges.results import Reading


class JudgeReward(ChatReward, SampleServerReward):
    """A reward read from a generative judge's reply."""

    kind = "judge"
    Options = JudgeOptions
    options: JudgeOptions

    def __init__(self, name: str, options: JudgeOptions) -> None:
        super().__init__(name, options)
        self.params["n"] = options.n
        self._reader = ReplyReader(options)

    def prepare(self, sample: Sample) -> dict[str, Any] | Score:
        return self.chat(sample)

    def read(self, body: Any, request: Request) -> Reading:
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
