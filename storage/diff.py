"""How two runs (or two scorer versions) disagree on the same samples: ``rewardq audit diff``.

:func:`paired_scores` reads the pairs from the store; :func:`diff_scores` compares them. Per reward,
over the samples both sides scored ``ok``: the mean of each side and of the delta (b - a), Pearson's and
Spearman's correlation (ranks with ties averaged; None when either side is constant), the flip rate when
both sides are binary (every value 0 or 1), and the largest disagreements. Samples whose status differs
(``ok`` on one side, ``error`` on the other …) are counted by transition.

For a reward with few distinct values (a binary or graded one, :data:`FEW_VALUES`), a scatter of a
against b is a few overplotted dots: :meth:`RewardDiff.transitions` counts the samples per (a value,
b value) instead, and :meth:`RewardDiff.why_no_correlation` says why a correlation is missing.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from rewardq.storage.models import scores_table

_c = scores_table.c


@dataclass(frozen=True, slots=True)
class PairedScore:
    """One sample's score for one reward in each of two runs (or by two scorers)."""

    sample_hash: str
    sample_id: str | None
    reward: str
    value_a: float | None
    status_a: str
    value_b: float | None
    status_b: str


def paired_scores(
    conn: Connection,
    run_a: str,
    run_b: str,
    *,
    rewards: Iterable[str] | None = None,
    scorer_a: str | None = None,
    scorer_b: str | None = None,
) -> Iterator[PairedScore]:
    """The samples (by content hash) scored for the same reward in both runs, each side's latest score,
    ordered by reward, then by side a's row id.

    ``scorer_a``/``scorer_b`` keep only scores whose scorer fingerprint starts with them: with them,
    ``run_a`` and ``run_b`` may be the same run rescored by two scorer versions.

    Each side is read with one ``run_id = …`` query (an index scan on ``run_id``, whatever the table's
    statistics say) and the two are paired here: a join of the runs in SQL lets the planner
    pick a plan from statistics, and a table not yet analysed got sequential scans of all runs (15 s).
    """
    side_a = _latest_scores(conn, run_a, scorer_a, rewards)
    side_b = _latest_scores(conn, run_b, scorer_b, rewards)
    for key, (_, sample_id, value_a, status_a) in sorted(
        side_a.items(), key=lambda item: (item[0][1], item[1][0])
    ):
        b = side_b.get(key)
        if b is not None:
            yield PairedScore(key[0], sample_id, key[1], value_a, status_a, b[2], b[3])


def _latest_scores(
    conn: Connection, run_id: str, scorer: str | None, rewards: Iterable[str] | None
) -> dict[tuple[str, str], tuple[int, str | None, float | None, str]]:
    """``{(sample_hash, reward): (id, sample_id, value, status)}`` of the run's latest score of each."""
    query = select(_c.id, _c.sample_hash, _c.reward, _c.sample_id, _c.value, _c.status).where(
        _c.run_id == run_id
    )
    if scorer is not None:
        query = query.where(_c.scorer.startswith(scorer, autoescape=True))
    if rewards is not None:
        query = query.where(_c.reward.in_(list(rewards)))
    latest: dict[tuple[str, str], tuple[int, str | None, float | None, str]] = {}
    for row_id, sample_hash, reward, sample_id, value, status in conn.execute(query):
        held = latest.get((sample_hash, reward))
        if held is None or held[0] < row_id:
            latest[(sample_hash, reward)] = (row_id, sample_id, value, status)
    return latest


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One sample on which the two sides differ, by ``delta = value_b - value_a``."""

    reward: str
    sample_hash: str
    sample_id: str | None
    value_a: float
    value_b: float
    delta: float


FEW_VALUES = 10
"""Most distinct values on each side for which ``rewardq audit diff --plot`` draws transition counts."""


@dataclass(frozen=True)
class Transitions:
    """How many samples went from each value on side a to each value on side b."""

    values_a: list[float]  # sorted distinct values of side a
    values_b: list[float]
    counts: list[list[int]]  # counts[i][j]: samples valued values_a[i] on side a and values_b[j] on b


@dataclass(frozen=True)
class RewardDiff:
    """The comparison of one reward's scores between side a and side b."""

    reward: str
    paired: int  # samples scored for this reward on both sides
    both_ok: int  # of which both sides have a value; the statistics are over these
    mean_a: float | None
    mean_b: float | None
    mean_delta: float | None
    pearson: float | None
    spearman: float | None
    flip_rate: float | None  # None unless both sides are binary
    flips: int | None
    status_changes: dict[str, int]  # "ok→error": count
    largest: list[Disagreement] = field(default_factory=list)
    values_a: list[float] = field(default_factory=list, repr=False)  # for plots
    values_b: list[float] = field(default_factory=list, repr=False)

    def transitions(self, limit: int = FEW_VALUES) -> Transitions | None:
        """The counts per (a value, b value) of the samples both sides scored ``ok``; None when either
        side has more than ``limit`` distinct values (or there are none)."""
        values_a, values_b = sorted(set(self.values_a)), sorted(set(self.values_b))
        if not values_a or len(values_a) > limit or len(values_b) > limit:
            return None
        row, column = {v: i for i, v in enumerate(values_a)}, {v: j for j, v in enumerate(values_b)}
        counts = [[0] * len(values_b) for _ in values_a]
        for a, b in zip(self.values_a, self.values_b, strict=True):
            counts[row[a]][column[b]] += 1
        return Transitions(values_a, values_b, counts)

    def why_no_correlation(self, label_a: str = "a", label_b: str = "b") -> str | None:
        """Why :attr:`pearson` (and :attr:`spearman`) is None, naming the sides; None when it is not."""
        if self.pearson is not None:
            return None
        if self.both_ok < 2:
            return f"{self.both_ok} sample(s) scored ok on both sides, correlation needs 2"
        constant = [
            label for label, v in ((label_a, self.values_a), (label_b, self.values_b)) if len(set(v)) == 1
        ]
        if len(constant) == 2:
            return f"both {label_a} and {label_b} are constant"
        return f"{constant[0]} is constant"

    def summary(self) -> dict[str, object]:
        """The row ``rewardq audit diff`` shows."""
        return {
            "reward": self.reward,
            "paired": self.paired,
            "both ok": self.both_ok,
            "mean a": self.mean_a,
            "mean b": self.mean_b,
            "mean delta": self.mean_delta,
            "pearson": self.pearson,
            "spearman": self.spearman,
            "flip rate": self.flip_rate,
            "flips": self.flips,
            "status changes": ", ".join(f"{k}: {v}" for k, v in sorted(self.status_changes.items())) or None,
        }


def diff_scores(pairs: Iterable[PairedScore], *, top: int = 10) -> list[RewardDiff]:
    """One :class:`RewardDiff` per reward present in ``pairs``, ordered by reward."""
    by_reward: dict[str, list[PairedScore]] = {}
    for pair in pairs:
        by_reward.setdefault(pair.reward, []).append(pair)
    return [_diff(reward, by_reward[reward], top) for reward in sorted(by_reward)]


def _diff(reward: str, pairs: list[PairedScore], top: int) -> RewardDiff:
    values_a: list[float] = []
    values_b: list[float] = []
    ok_pairs: list[PairedScore] = []
    changes: dict[str, int] = {}
    for p in pairs:
        if p.status_a != p.status_b:
            key = f"{p.status_a}→{p.status_b}"
            changes[key] = changes.get(key, 0) + 1
        if p.status_a == "ok" and p.status_b == "ok" and p.value_a is not None and p.value_b is not None:
            values_a.append(p.value_a)
            values_b.append(p.value_b)
            ok_pairs.append(p)
    n = len(values_a)
    binary = n > 0 and all(v in (0.0, 1.0) for v in values_a) and all(v in (0.0, 1.0) for v in values_b)
    flips = sum(a != b for a, b in zip(values_a, values_b, strict=True)) if binary else None
    largest = heapq.nlargest(
        top,
        (
            Disagreement(reward, p.sample_hash, p.sample_id, a, b, b - a)
            for p, a, b in zip(ok_pairs, values_a, values_b, strict=True)
            if a != b
        ),
        key=lambda d: abs(d.delta),
    )
    return RewardDiff(
        reward=reward,
        paired=len(pairs),
        both_ok=n,
        mean_a=_mean(values_a),
        mean_b=_mean(values_b),
        mean_delta=_mean([b - a for a, b in zip(values_a, values_b, strict=True)]),
        pearson=pearson(values_a, values_b),
        spearman=pearson(ranks(values_a), ranks(values_b)),
        flip_rate=flips / n if flips is not None else None,
        flips=flips,
        status_changes=changes,
        largest=largest,
        values_a=values_a,
        values_b=values_b,
    )


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's correlation; None with fewer than two pairs or when either side is constant."""
    n = len(xs)
    if n < 2:
        return None
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    syy = math.fsum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties getting the mean of the ranks they span (as Spearman's correlation needs)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            out[order[k]] = rank
        i = j + 1
    return out
