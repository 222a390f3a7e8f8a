"""The batch-first reward contract every reward kind implements.

A reward *kind* (``format``, ``accuracy``, a reward model …) is a :class:`Reward` subclass with an
``Options`` model; a configured *reward* is a name bound to a kind and its options. A worker builds
each reward once per process and calls :meth:`Reward.score` with whole chunks.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from rewardq.schema import Sample, Status


@dataclass(frozen=True, slots=True)
class Score:
    """One sample's score: a value or None, a status, and why when it is not ``ok``."""

    value: float | None
    status: Status = "ok"
    error: str | None = None
    raw: str | None = None  # a judge's raw output, kept for the audit

    @classmethod
    def ok(cls, value: float, raw: str | None = None) -> Score:
        return cls(float(value), "ok", None, raw)

    @classmethod
    def unscorable(cls, reason: str) -> Score:
        return cls(None, "unscorable", reason)

    @classmethod
    def failed(cls, error: str) -> Score:
        return cls(None, "error", error)


class RewardOptions(BaseModel):
    """Base of every kind's options: unknown keys are errors, values are checked on load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Reward(ABC):
    """A configured reward. Subclasses set ``kind``, ``version`` and ``Options`` and implement ``score``."""

    kind: ClassVar[str]
    version: ClassVar[str] = "1"
    Options: ClassVar[type[RewardOptions]] = RewardOptions

    def __init__(self, name: str, options: RewardOptions) -> None:
        self.name = name
        self.options = options

    @cached_property
    def fingerprint(self) -> str:
        """Kind, version and a hash of the options: what the audit records as the scorer's identity."""
        digest = hashlib.sha256(self.options.model_dump_json().encode()).hexdigest()[:12]
        return f"{self.kind}@{self.version}:{digest}"

    @abstractmethod
    def score(self, samples: Sequence[Sample]) -> list[Score]:
        """Score a chunk; return one :class:`Score` per sample, in order. Never raise for one bad sample."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the reward holds (models, clients, helper processes)."""
