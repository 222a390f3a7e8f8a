"""A run's reward-health signals per (step, reward), behind ``rewardq audit health``: :func:`run_health`.

Per (step, reward): the count of each status, the mean, population std (as ``rewardq audit stats``),
10th and 90th percentiles of the ``ok`` values, Spearman's correlation of the value with the completion's
length (a reward that rises with length alone is the usual sign of length hacking) and a drift test of the
step against the run's earlier steps (:class:`rewardq.storage.signals.DriftTest`). Per step and pair of
rewards: their agreement, Spearman's correlation of their values on the samples (by content hash) both
scored ``ok``.

A completion's length is its text's length in characters where the audit holds the text (``store_text``),
else the largest ``completion_tokens`` a reward that is not a judge recorded for it (a reward model counts
the completion's tokens; a judge's ``completion_tokens`` are its own reply's, so rows with a
``template_hash`` are not used). One unit for the whole run: characters if any row has text. Where
neither is stored, :attr:`RunHealth.length_unit` is None and no length correlation is given.

Only the rows that stand count (as in :mod:`rewardq.storage.stats`). The run is read in one pass, one
statement streamed in batches, of seven narrow columns of its standing rows (the length computed in SQL,
the content hash cut to 16 hex digits, enough to pair the samples of one step): the correlations and the
drift test need every value, so the counts and moments are taken from the same rows rather than from a
second SQL pass (each pass sorts the run's rows to find those that stand; measured in docs/benchmarks.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, case, func, select

from rewardq.storage.models import scores_table
from rewardq.storage.signals import Drift, DriftTest, drift_by_step, population_std, quantiles, spearman
from rewardq.storage.stats import standing_rows, stands
from rewardq.wire.schema import STATUSES

_c = scores_table.c

NO_LENGTH = (
    "no completion length in the audit: store_text is off and no reward that is not a judge recorded "
    "completion_tokens, so no length correlation"
)


@dataclass(frozen=True, slots=True)
class RewardStep:
    """The health of one reward at one step: statuses, the values' spread, length correlation, drift."""

    step: int | None
    reward: str
    count: int
    statuses: Mapping[str, int]
    mean: float | None
    std: float | None  # population std, as in rewardq.storage.stats
    p10: float | None
    p90: float | None
    length_n: int  # ok values whose completion has a length
    length_spearman: float | None
    drift: Drift | None  # None: the first step, too few values on a side, or no step number

    def row(self) -> dict[str, Any]:
        """The row ``rewardq audit health`` prints."""
        drift = self.drift
        return {
            "step": self.step,
            "reward": self.reward,
            "scores": self.count,
            **self.statuses,
            "mean": self.mean,
            "std": self.std,
            "p10": self.p10,
            "p90": self.p90,
            "len spearman": self.length_spearman,
            "len n": self.length_n,
            "drift KS": None if drift is None else drift.ks,
            "drift p": None if drift is None else drift.p,
            "drift": None if drift is None else ("DRIFT" if drift.flagged else "-"),
        }

    def as_json(self) -> dict[str, Any]:
        drift = self.drift
        return {
            "step": self.step,
            "reward": self.reward,
            "count": self.count,
            "statuses": dict(self.statuses),
            "mean": self.mean,
            "std": self.std,
            "p10": self.p10,
            "p90": self.p90,
            "length": {"n": self.length_n, "spearman": self.length_spearman},
            "drift": None
            if drift is None
            else {
                "ks": drift.ks,
                "p": drift.p,
                "reference": drift.reference,
                "mean_shift": drift.mean_shift,
                "flagged": drift.flagged,
            },
        }


@dataclass(frozen=True, slots=True)
class Agreement:
    """Two rewards' Spearman correlation at one step, over the ``n`` samples both scored ``ok``."""

    step: int | None
    reward_a: str
    reward_b: str
    n: int
    spearman: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "a": self.reward_a,
            "b": self.reward_b,
            "n": self.n,
            "spearman": self.spearman,
        }


@dataclass(frozen=True)
class RunHealth:
    """Every signal of one run; ``steps`` ordered by step (None last) then reward."""

    run_id: str
    length_unit: str | None  # "characters", "tokens", or None when the audit holds no length
    test: DriftTest
    steps: list[RewardStep] = field(default_factory=list)
    agreements: list[Agreement] = field(default_factory=list)

    @property
    def length_note(self) -> str | None:
        """Why there is no length correlation, when the audit holds no completion length."""
        return None if self.length_unit else NO_LENGTH

    @property
    def rewards(self) -> list[str]:
        return sorted({s.reward for s in self.steps})

    def as_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "length_unit": self.length_unit,
            "length_note": self.length_note,
            "drift_test": self.test.describe(),
            "steps": [s.as_json() for s in self.steps],
            "agreement": [a.as_json() for a in self.agreements],
        }


def run_health(
    conn: Connection,
    run_id: str,
    *,
    rewards: Iterable[str] | None = None,
    step_min: int | None = None,
    step_max: int | None = None,
    pairs: Iterable[tuple[str, str]] | None = None,
    test: DriftTest | None = None,
) -> RunHealth:
    """The health of ``run_id`` (filters as in :func:`rewardq.storage.queries.run_scores`); agreement for
    ``pairs`` of rewards, or every pair of the run's rewards. Drift compares each step with the earlier
    steps read, so a ``step_min`` also bounds the reference."""
    import numpy as np

    test = test or DriftTest()
    read = _read(conn, run_id, None if rewards is None else list(rewards), step_min, step_max)
    values, by_sample, lengths = read.values, read.by_sample, read.lengths
    keys = sorted(read.counts, key=lambda k: (k[0] is None, k[0] or 0, k[1]))
    drifts: dict[str, dict[int, Drift | None]] = {}
    for reward in sorted({r for _, r in keys}):
        series = [(step, np.sort(values[(step, r)])) for step, r in keys if r == reward and step is not None]
        drifts[reward] = drift_by_step(series, test)
    steps = []
    for step, reward in keys:
        counts = read.counts[(step, reward)]
        ok = values[(step, reward)]
        p10, p90 = quantiles(ok)
        samples = by_sample.get((step, reward), {})
        measured = [(v, lengths[(step, h)]) for h, v in samples.items() if (step, h) in lengths]
        steps.append(
            RewardStep(
                step=step,
                reward=reward,
                count=sum(counts.values()),
                statuses=counts,
                mean=float(ok.mean()) if len(ok) else None,
                std=population_std(ok),
                p10=p10,
                p90=p90,
                length_n=len(measured),
                length_spearman=spearman([v for v, _ in measured], [n for _, n in measured]),
                drift=None if step is None else drifts[reward].get(step),
            )
        )
    names = sorted({r for _, r in keys})
    chosen = list(pairs) if pairs is not None else list(itertools.combinations(names, 2))
    agreements = []
    for step in sorted({step for step, _ in keys}, key=lambda x: (x is None, x or 0)):
        for a, b in chosen:
            side_a, side_b = by_sample.get((step, a), {}), by_sample.get((step, b), {})
            both = [h for h in side_a if h in side_b]
            rho = spearman([side_a[h] for h in both], [side_b[h] for h in both])
            agreements.append(Agreement(step, a, b, len(both), rho))
    return RunHealth(run_id, read.unit, test, steps, agreements)


@dataclass
class _Read:
    """What :func:`_read` gathers of a run's standing rows: the count per status and the ``ok`` values per
    (step, reward) (an array), the ``ok`` values per sample (one value of a sample sent twice in a step)
    for pairing and length, the completions' lengths per (step, sample) and their unit."""

    counts: dict[tuple[int | None, str], dict[str, int]] = field(default_factory=dict)
    values: dict[tuple[int | None, str], Any] = field(default_factory=dict)
    by_sample: dict[tuple[int | None, str], dict[str, float]] = field(default_factory=dict)
    lengths: dict[tuple[int | None, str], float] = field(default_factory=dict)
    unit: str | None = None


_BATCH = 50_000


def _read(
    conn: Connection,
    run_id: str,
    rewards: list[str] | None,
    step_min: int | None,
    step_max: int | None,
) -> _Read:
    """One pass over the run's standing rows, read in batches of narrow columns."""
    import numpy as np

    rows = standing_rows(
        run_id,
        step_min,
        step_max,
        rewards,
        func.substr(_c.sample_hash, 1, 16).label("sample"),
        func.length(_c.completion_text).label("chars"),
        case((_c.template_hash.is_(None), _c.completion_tokens)).label("tokens"),
    ).c
    query = select(rows.step, rows.reward, rows.status, rows.sample, rows.value, rows.chars, rows.tokens)
    result = conn.execute(query.where(stands(rows)), execution_options={"yield_per": _BATCH})
    read = _Read()
    ok_values: dict[tuple[int | None, str], list[float]] = {}
    chars: dict[tuple[int | None, str], float] = {}
    tokens: dict[tuple[int | None, str], float] = {}
    for step, reward, status, sample, value, n_chars, n_tokens in result:
        key = (step, reward)
        counts = read.counts.get(key)
        if counts is None:
            counts = read.counts[key] = dict.fromkeys(STATUSES, 0)
            ok_values[key] = []
        counts[status] += 1
        if status != "ok":
            continue
        ok_values[key].append(value)
        read.by_sample.setdefault(key, {})[sample] = value
        if n_chars is not None:
            chars[(step, sample)] = n_chars
        if n_tokens is not None and n_tokens > tokens.get((step, sample), -1):
            tokens[(step, sample)] = n_tokens
    read.values = {key: np.array(v, dtype=float) for key, v in ok_values.items()}
    if chars:
        read.lengths, read.unit = chars, "characters"
    elif tokens:
        read.lengths, read.unit = tokens, "tokens"
    return read
