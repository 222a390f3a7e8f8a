"""The read side of the audit store, behind ``rewardq audit``: runs, a run's scores and statistics, the
history of one sample, the scores a run already holds (to resume a rescoring) and the scores two runs
gave the same samples (``rewardq audit diff``).

Every function takes a :class:`sqlalchemy.Connection` (``session.connection()`` from a Session) and
returns frozen dataclasses; none commits or writes. The same SQL runs on SQLite and PostgreSQL.

Statistics are over the ``ok`` scores only (the others have no value). ``std`` is the population
standard deviation (divisor n, so one score has std 0.0): it describes the scores that were given, as
``numpy.std`` does, rather than estimating a wider population. It is computed in one pass from the
mean of the values and the mean of their squares (SQLite has no ``stddev``), which loses precision
only when the mean is many orders of magnitude larger than the spread — not the case for rewards.

Statistics count the rows that *stand*, as a resumed ``rewardq score`` writes its output: a rerun of a
run scores again what has no final score (``error``) or no score by the current scorer, in new
batches, and its output holds the new score. So a row is superseded when its (step, sample content,
reward) has a later row in another batch of the run, unless the row is final (``ok``/``unscorable``)
and by the same scorer as that later row; rows of one batch (a sample sent twice in one chunk) all stand.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, Subquery, distinct, func, select, true

from rewardq.storage.models import scores_table
from rewardq.storage.rows import ScoreRecord
from rewardq.wire.schema import STATUSES

__all__ = [
    "FINAL_STATUSES",
    "PairedScore",
    "RunSummary",
    "ScoreRecord",
    "StepStats",
    "list_runs",
    "paired_scores",
    "run_exists",
    "run_scores",
    "sample_history",
    "step_stats",
    "stored_scores",
]

# Statuses a resumed run keeps; ``error`` (a judge that was down, a crash) is scored again.
FINAL_STATUSES = ("ok", "unscorable")

_c = scores_table.c


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run as the audit store saw it: when it was scored, which steps, how many scores, which rewards,
    and the rewards whose scores come from more than one scorer fingerprint (``mixed_scorers``)."""

    run_id: str
    first_at: datetime
    last_at: datetime
    step_min: int | None
    step_max: int | None
    scores: int
    rewards: tuple[str, ...]
    mixed_scorers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StepStats:
    """The scores of one reward at one step of a run.

    ``count`` counts scores of every status and ``statuses`` each status (every one of
    :data:`rewardq.wire.schema.STATUSES` is a key); ``mean``, ``std`` (population), ``min`` and ``max`` are
    over the ``statuses["ok"]`` values and None when there are none.
    """

    step: int | None
    reward: str
    count: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    statuses: Mapping[str, int]

    @property
    def ok(self) -> int:
        """How many scores the statistics are over."""
        return self.statuses["ok"]


def list_runs(conn: Connection) -> list[RunSummary]:
    """Every run in the store, oldest first (by its first score)."""
    query = select(
        _c.run_id,
        _c.reward,
        func.min(_c.created_at),
        func.max(_c.created_at),
        func.min(_c.step),
        func.max(_c.step),
        func.count(),
        func.count(distinct(_c.scorer)),
    ).group_by(_c.run_id, _c.reward)
    runs: dict[str, dict[str, Any]] = {}
    for run_id, reward, first_at, last_at, step_min, step_max, count, scorers in conn.execute(query):
        run = runs.get(run_id)
        if run is None:
            runs[run_id] = {
                "first_at": first_at,
                "last_at": last_at,
                "steps": [s for s in (step_min, step_max) if s is not None],
                "scores": count,
                "rewards": {reward},
                "mixed": {reward} if scorers > 1 else set(),
            }
            continue
        if scorers > 1:
            run["mixed"].add(reward)
        run["first_at"] = min(run["first_at"], first_at)
        run["last_at"] = max(run["last_at"], last_at)
        run["steps"].extend(s for s in (step_min, step_max) if s is not None)
        run["scores"] += count
        run["rewards"].add(reward)
    summaries = [
        RunSummary(
            run_id=run_id,
            first_at=r["first_at"],
            last_at=r["last_at"],
            step_min=min(r["steps"], default=None),
            step_max=max(r["steps"], default=None),
            scores=r["scores"],
            rewards=tuple(sorted(r["rewards"])),
            mixed_scorers=tuple(sorted(r["mixed"])),
        )
        for run_id, r in runs.items()
    ]
    return sorted(summaries, key=lambda s: (s.first_at, s.run_id))


def run_scores(
    conn: Connection,
    run_id: str,
    *,
    step_min: int | None = None,
    step_max: int | None = None,
    rewards: Iterable[str] | None = None,
    limit: int | None = None,
) -> list[ScoreRecord]:
    """The scores of ``run_id`` by step (scores without a step last), batch, sample index and reward.

    ``step_min``/``step_max`` bound the step (inclusive; scores without a step are then left out),
    ``rewards`` keeps only those rewards, ``limit`` caps the number of rows.
    """
    query = _run_filter(select(scores_table), run_id, step_min, step_max, rewards).order_by(
        _c.step.asc().nulls_last(), _c.batch_id, _c.sample_index, _c.reward
    )
    if limit is not None:
        query = query.limit(limit)
    return [ScoreRecord(**row) for row in conn.execute(query).mappings()]


def step_stats(
    conn: Connection,
    run_id: str,
    *,
    rewards: Iterable[str] | None = None,
    step_min: int | None = None,
    step_max: int | None = None,
) -> list[StepStats]:
    """Per (step, reward) of ``run_id``: counts per status and mean/std/min/max of the ``ok`` values.

    Ordered by step (scores without a step last), then reward; filters as in :func:`run_scores`.
    """
    rows = _standing(run_id, step_min, step_max, rewards).c
    ok = rows.status == "ok"
    value = rows.value
    query = (
        select(
            rows.step,
            rows.reward,
            func.count(),
            *(func.count().filter(rows.status == status) for status in STATUSES),
            func.avg(value).filter(ok),
            func.avg(value * value).filter(ok),
            func.min(value).filter(ok),
            func.max(value).filter(ok),
        )
        .where(
            (rows.batch_id == rows.last_batch)
            | (rows.status.in_(FINAL_STATUSES) & (rows.scorer == rows.last_scorer))
        )
        .group_by(rows.step, rows.reward)
        .order_by(rows.step.asc().nulls_last(), rows.reward)
    )
    out = []
    for row in conn.execute(query):
        step, reward, count = row[0], row[1], row[2]
        statuses = dict(zip(STATUSES, row[3 : 3 + len(STATUSES)], strict=True))
        mean, mean_sq, lo, hi = row[3 + len(STATUSES) :]
        out.append(
            StepStats(
                step=step,
                reward=reward,
                count=count,
                mean=None if mean is None else float(mean),
                std=_population_std(mean, mean_sq, lo, hi),
                min=lo,
                max=hi,
                statuses=statuses,
            )
        )
    return out


def sample_history(
    conn: Connection, *, sample_hash: str | None = None, sample_id: str | None = None
) -> list[ScoreRecord]:
    """Every score a sample ever got, across runs, rewards and rescorings, oldest first.

    The sample is given by its content hash, its user-given id, or both (then a score must match
    both). Raises ValueError when given neither.
    """
    if sample_hash is None and sample_id is None:
        raise ValueError("sample_history needs a sample_hash or a sample_id")
    query = select(scores_table)
    if sample_hash is not None:
        query = query.where(_c.sample_hash == sample_hash)
    if sample_id is not None:
        query = query.where(_c.sample_id == sample_id)
    query = query.order_by(_c.created_at, _c.id)
    return [ScoreRecord(**row) for row in conn.execute(query).mappings()]


def run_exists(conn: Connection, run_id: str) -> bool:
    """Whether the store holds any score of ``run_id``."""
    return conn.execute(select(true()).where(_c.run_id == run_id).limit(1)).first() is not None


def stored_scores(
    conn: Connection, run_id: str, scorers: Mapping[str, str], hashes: Collection[str]
) -> dict[tuple[str, str], tuple[float | None, str, str | None]]:
    """The final scores (``ok``/``unscorable``) ``run_id`` holds for samples of these content hashes,
    by reward, from the scorer of that fingerprint only: ``{(sample_hash, reward): (value, status,
    error)}``. ``scorers`` maps each reward to its fingerprint; the latest score wins."""
    if not hashes or not scorers:
        return {}
    query = (
        select(_c.sample_hash, _c.reward, _c.scorer, _c.value, _c.status, _c.error)
        .where(_c.run_id == run_id)
        .where(_c.reward.in_(list(scorers)))
        .where(_c.sample_hash.in_(list(hashes)))
        .where(_c.status.in_(FINAL_STATUSES))
        .order_by(_c.id)
    )
    found: dict[tuple[str, str], tuple[float | None, str, str | None]] = {}
    for sample_hash, reward, scorer, value, status, error in conn.execute(query):
        if scorers[reward] == scorer:
            found[(sample_hash, reward)] = (value, status, error)
    return found


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


def _standing(
    run_id: str, step_min: int | None, step_max: int | None, rewards: Iterable[str] | None
) -> Subquery:
    """The run's rows, each with the batch and scorer of the latest row of its (step, sample, reward)."""
    latest = {"partition_by": (_c.step, _c.sample_hash, _c.reward), "order_by": _c.id.desc()}
    query = select(
        _c.step,
        _c.reward,
        _c.value,
        _c.status,
        _c.batch_id,
        _c.scorer,
        func.first_value(_c.batch_id).over(**latest).label("last_batch"),
        func.first_value(_c.scorer).over(**latest).label("last_scorer"),
    )
    return _run_filter(query, run_id, step_min, step_max, rewards).subquery()


def _run_filter(
    query: Select[Any],
    run_id: str,
    step_min: int | None,
    step_max: int | None,
    rewards: Iterable[str] | None,
) -> Select[Any]:
    query = query.where(_c.run_id == run_id)
    if step_min is not None:
        query = query.where(_c.step >= step_min)
    if step_max is not None:
        query = query.where(_c.step <= step_max)
    if rewards is not None:
        query = query.where(_c.reward.in_(list(rewards)))
    return query


def _population_std(mean: Any, mean_sq: Any, lo: Any, hi: Any) -> float | None:
    if mean is None:
        return None
    if lo == hi:  # one value, or all equal: exactly 0, not the rounding residue of E[x²] - E[x]²
        return 0.0
    return math.sqrt(max(float(mean_sq) - float(mean) ** 2, 0.0))
