"""Tiny reward kinds for the tests of groups and steps, loaded by workers as a rewards-file plugin
(``plugins = ["<this file>"]``; :func:`rewards_file` writes such a file).

``group_size`` sees groups and scores each sample with the size of its group in the call, so a group
split across tasks, or merged with another task's, shows in the values; it holds a "model", so that a
worker coalesces its tasks. ``slow_groups`` sees groups in a killable child and hangs on a call holding
more than one group, so that the worker scores the chunk again one group at a time. ``stepper`` splits
a completion into steps on blank lines and scores each.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rewardq.wire.schema import Sample
from rewardq.workers.rewards.base import Reward, Score
from rewardq.workers.rewards.registry import KindRegistry


class GroupSize(Reward):
    kind = "group_size"
    sees = "group"
    holds_model = True

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        sizes = Counter(sample.group_key for sample in samples)
        return [Score.ok(float(sizes[sample.group_key])) for sample in samples]


class SlowGroups(Reward):
    kind = "slow_groups"
    sees = "group"

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        if len({sample.group_key for sample in samples}) > 1:
            time.sleep(600)
        return [Score.ok(float(len(samples)))] * len(samples)


def steps_of(text: str) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Step k of n scores (k + 1) / n; each ends where its text does (blank lines between steps)."""
    parts = text.split("\n\n")
    ends, at = [], 0
    for part in parts:
        at += len(part)
        ends.append(at)
        at += 2
    return tuple((k + 1) / len(parts) for k in range(len(parts))), tuple(ends)


class Stepper(Reward):
    kind = "stepper"
    runs_in = "process"

    def score(self, samples: Sequence[Sample]) -> list[Score]:
        out = []
        for sample in samples:
            steps, ends = steps_of(sample.completion_text)
            out.append(Score.ok(min(steps), steps=steps, step_ends=ends))
        return out


def register(kinds: KindRegistry) -> None:
    kinds.add("group_size", GroupSize)
    kinds.add("stepper", Stepper)
    kinds.add("slow_groups", SlowGroups)


def rewards_file(directory: Path) -> Path:
    """A rewards file serving ``groups`` (kind group_size), ``slow`` (slow_groups) and ``steps``
    (stepper)."""
    path = directory / "rewards.toml"
    path.write_text(
        f'plugins = ["{Path(__file__).resolve()}"]\ngroup_kinds = ["group_size", "slow_groups"]\n'
        'step_kinds = ["stepper"]\n[rewards.groups]\nkind = "group_size"\n[rewards.steps]\nkind = "stepper"\n'
        '[rewards.slow]\nkind = "slow_groups"\ntimeout = 4\n'
    )
    return path
