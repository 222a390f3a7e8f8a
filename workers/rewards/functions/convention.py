"""The contract a trainer convention implements, and what the conventions share."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Score


@dataclass(frozen=True)
class Call:
    """One call of the reward function: the samples it scores (indices in the chunk) and its arguments."""

    indices: tuple[int, ...]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """How a chunk is scored: the calls to make, and the scores of samples no call can take."""

    calls: list[Call]
    settled: dict[int, Score] = field(default_factory=dict)


class Convention(ABC):
    """A trainer's way of building and calling a reward function: what arguments each call gets, and
    how many samples one call covers (a chunk, or one sample)."""

    name: ClassVar[str]

    def __init__(self, options: Any) -> None:
        self.options = options

    def build(self, target: Any, init: Mapping[str, Any] | None) -> Callable[..., Any]:
        """The callable to score with, made from the imported attribute as the trainer makes it."""
        if init is None:
            return target
        return target(**init)

    def load(self, load_module: Callable[[], ModuleType]) -> ModuleType:
        """Import the function's module; a convention may prepare the import (see verl's)."""
        return load_module()

    @abstractmethod
    def plan(self, samples: Sequence[Sample]) -> Plan:
        """The calls for ``samples``: one for them all where the trainer calls per batch, else one each."""

    @abstractmethod
    def read(self, result: Any, count: int) -> list[Score]:
        """The scores of ``count`` samples from what one call returned."""


def to_score(value: Any, raw: str | None = None) -> Score:
    """A returned value as a score: a number is ``ok``, None or NaN ``unscorable``, else ``error``."""
    if value is None:
        return Score(None, "unscorable", "the function returned None", raw)
    if hasattr(value, "item") and callable(value.item):  # a numpy or torch scalar
        value = value.item()
    if isinstance(value, bool | int | float):
        number = float(value)
        if math.isnan(number):
            return Score(None, "unscorable", "the function returned NaN", raw)
        if math.isinf(number):
            return Score(None, "error", f"the function returned {number}", raw)
        return Score(number, "ok", None, raw)
    return Score(
        None, "error", f"the function returned {type(value).__name__}, not a number: {value!r:.200}", raw
    )


def read_list(result: Any, count: int) -> list[Score]:
    """Scores from a batch function's list of values, which must have one value per sample."""
    if hasattr(result, "tolist") and callable(result.tolist):  # a numpy array or torch tensor
        result = result.tolist()
    if not isinstance(result, list | tuple):
        return [
            Score.failed(f"the function returned {type(result).__name__}, not a list of {count} values")
        ] * count
    if len(result) != count:
        return [Score.failed(f"the function returned {len(result)} values for {count} samples")] * count
    return [to_score(v) for v in result]


def batched_columns(samples: Sequence[Sample]) -> dict[str, list[Any]]:
    """Each column as a list over the samples, keys in first-seen order, None where a sample lacks one
    (ms-swift's ``RowPreprocessor.rows_to_batched``; TRL takes the first row's keys)."""
    keys: dict[str, None] = {}
    for sample in samples:
        keys.update(dict.fromkeys(sample.columns))
    return {key: [s.columns.get(key) for s in samples] for key in keys}


def chat(turns: str | list[Any] | None, role: str) -> list[dict[str, Any]]:
    """A prompt or completion as chat messages: a string becomes one message with ``role``."""
    if turns is None:
        return []
    if isinstance(turns, str):
        return [{"role": role, "content": turns}]
    return [dict(m) for m in turns]
