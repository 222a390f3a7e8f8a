"""TRL's convention: one call per batch, everything by keyword, as ``GRPOTrainer._calculate_rewards`` does.

TRL calls ``reward_func(prompts=..., completions=..., completion_ids=..., **columns, trainer_state=...,
log_extra=..., log_metric=...)`` with one list entry per completion. Completions are strings, or, when
the prompts are chat messages, lists of messages (``[{"role": "assistant", "content": ...}]``); a
string completion of a chat prompt is wrapped so. A worker has no trainer: ``trainer_state`` is None and
``log_extra`` / ``log_metric`` accept and drop what they are given. ``completion_ids`` is the sample's
``completion_ids`` column (None where absent). Columns are passed as lists, None where a sample lacks one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score
from rewardq.workers.rewards.functions.convention import Call, Convention, Plan, batched_columns, read_list


def _discard(*_: Any, **__: Any) -> None:
    """Stands in for TRL's ``log_extra`` / ``log_metric``: a worker has no trainer log to write to."""


def trl_completion(sample: Sample) -> str | list[Any]:
    """The completion as TRL hands it over: messages when the prompt is messages, else as it came."""
    if isinstance(sample.completion, str) and isinstance(sample.prompt, list):
        return [{"role": "assistant", "content": sample.completion}]
    return sample.completion


class TrlConvention(Convention):
    """``reward_func(prompts=, completions=, completion_ids=, **columns, trainer_state=, log_extra=,
    log_metric=)``, once per chunk."""

    name: ClassVar[str] = "trl"

    def plan(self, samples: Sequence[Sample]) -> Plan:
        columns = batched_columns(samples)
        completion_ids = columns.pop("completion_ids", [None] * len(samples))
        kwargs = {
            **columns,
            "prompts": [s.prompt for s in samples],
            "completions": [trl_completion(s) for s in samples],
            "completion_ids": completion_ids,
            "trainer_state": None,
            "log_extra": _discard,
            "log_metric": _discard,
        }
        return Plan([Call(tuple(range(len(samples))), kwargs=kwargs)])

    def read(self, result: Any, count: int) -> list[Score]:
        return read_list(result, count)
