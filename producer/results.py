"""What a trainer gets back: per-reward values and statuses in input order, and weighted totals."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rewardq.wire.schema import Status


def weighted_total(values: Mapping[str, float | None], weights: Mapping[str, float]) -> float | None:
    """Sum of weight * value over the counted rewards (weight ≠ 0) that have a value.

    A reward without a value (unscorable, error, timeout) is left out of the sum, as TRL does with None
    (nansum); when no counted reward has a value the total is None, never a silent 0.0. A total that
    overflows (weights are bounded by the producer, so only reward values near 1e300 can) is None too:
    an infinite reward would wreck a training step; the per-reward values are still there.
    """
    total = 0.0
    counted = False
    for name, weight in weights.items():
        value = values.get(name)
        if weight != 0 and value is not None and not math.isnan(value):
            total += weight * value
            counted = True
    return total if counted and math.isfinite(total) else None


@dataclass(frozen=True)
class ScoreResult:
    """Scores of one batch, aligned with the samples as submitted.

    ``rewards[name][i]`` is sample i's value for a reward (None unless its status is ``ok``),
    ``statuses[name][i]`` its status, ``errors[name][i]`` the error text where there is one, and
    ``totals[i]`` the weighted total. ``steps[name][i]`` is the list of sample i's step (or turn)
    scores, None for a scalar reward (the value is their aggregate), and ``step_ends[name][i]`` where
    each step ends in the completion text (characters; None where the steps are turns):
    :func:`rewardq.steps.token_ends` turns them into token indices.
    """

    batch_id: str
    weights: dict[str, float]
    rewards: dict[str, list[float | None]]
    statuses: dict[str, list[Status]]
    errors: dict[str, dict[int, str]]
    steps: dict[str, list[list[float | None] | None]] = field(default_factory=dict)
    step_ends: dict[str, list[list[int] | None]] = field(default_factory=dict)
    totals: list[float | None] = field(init=False)

    def __post_init__(self) -> None:
        for per in (self.steps, self.step_ends):
            for name, values in self.rewards.items():
                per.setdefault(name, [None] * len(values))
        names = list(self.weights)
        columns = [self.rewards[n] for n in names]
        totals = [
            weighted_total(dict(zip(names, row, strict=True)), self.weights)
            for row in zip(*columns, strict=True)
        ]
        object.__setattr__(self, "totals", totals)

    def __len__(self) -> int:
        return len(self.totals)

    def status_counts(self) -> dict[str, dict[str, int]]:
        """Per reward, how many samples got each status."""
        counts: dict[str, dict[str, int]] = {}
        for name, statuses in self.statuses.items():
            per: dict[str, int] = {}
            for s in statuses:
                per[s] = per.get(s, 0) + 1
            counts[name] = per
        return counts

    def record(self, i: int) -> dict[str, Any]:
        """Sample i's fields as ``rewardq score`` writes them next to the input record."""
        out: dict[str, Any] = {
            "rewards": {n: self.rewards[n][i] for n in self.weights},
            "reward": self.totals[i],
            "reward_status": {n: self.statuses[n][i] for n in self.weights},
        }
        errors = {n: self.errors[n][i] for n in self.weights if i in self.errors[n]}
        if errors:
            out["reward_errors"] = errors
        steps = {n: self.steps[n][i] for n in self.weights if self.steps[n][i] is not None}
        if steps:
            out["reward_steps"] = steps
        return out
