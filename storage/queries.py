"""The read side of the audit store, behind ``rewardq audit``: runs, a run's scores, the history of
one sample and the scores a run already holds (to resume a rescoring). A run's statistics are in
:mod:`rewardq.storage.stats`, the scores two runs gave the same samples in :mod:`rewardq.storage.diff`.

Every function takes a :class:`sqlalchemy.Connection` (``session.connection()`` from a Session) and
returns frozen dataclasses; none commits or writes. The same SQL runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, distinct, func, select, true

from rewardq.storage.models import scores_table
from rewardq.storage.rows import ScoreRecord
from rewardq.wire.schema import NOT_SCORERS, Status

__all__ = [
    "FINAL_STATUSES",
    "RunSummary",
    "ScoreRecord",
    "list_runs",
    "run_exists",
    "run_scores",
    "sample_history",
    "stored_scores",
]

# Statuses a resumed run keeps; ``error`` (a judge that was down, a crash) is scored again.
FINAL_STATUSES: tuple[Status, ...] = ("ok", "unscorable")

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
        func.count(distinct(_c.scorer)).filter(_c.scorer.not_in(NOT_SCORERS)),
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
    query = run_filter(select(scores_table), run_id, step_min, step_max, rewards).order_by(
        _c.step.asc().nulls_last(), _c.batch_id, _c.sample_index, _c.reward
    )
    if limit is not None:
        query = query.limit(limit)
    return [ScoreRecord(**row) for row in conn.execute(query).mappings()]


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
) -> dict[tuple[str, str], tuple[float | None, Status, str | None, str | None]]:
    """The final scores (``ok``/``unscorable``) ``run_id`` holds for samples of these content hashes,
    by reward, from the scorer of that fingerprint only: ``{(sample_hash, reward): (value, status,
    error, step scores as JSON)}``. ``scorers`` maps each reward to its fingerprint; the latest score
    wins."""
    if not hashes or not scorers:
        return {}
    query = (
        select(_c.sample_hash, _c.reward, _c.scorer, _c.value, _c.status, _c.error, _c.step_scores)
        .where(_c.run_id == run_id)
        .where(_c.reward.in_(list(scorers)))
        .where(_c.sample_hash.in_(list(hashes)))
        .where(_c.status.in_(FINAL_STATUSES))
        .order_by(_c.id)
    )
    found: dict[tuple[str, str], tuple[float | None, Status, str | None, str | None]] = {}
    for sample_hash, reward, scorer, value, status, error, steps in conn.execute(query):
        if scorers[reward] == scorer:
            found[(sample_hash, reward)] = (value, status, error, steps)
    return found


def run_filter(
    query: Select[Any],
    run_id: str,
    step_min: int | None,
    step_max: int | None,
    rewards: Iterable[str] | None,
) -> Select[Any]:
    """``query`` restricted to ``run_id``'s rows within the step bounds (inclusive) and rewards given."""
    query = query.where(_c.run_id == run_id)
    if step_min is not None:
        query = query.where(_c.step >= step_min)
    if step_max is not None:
        query = query.where(_c.step <= step_max)
    if rewards is not None:
        query = query.where(_c.reward.in_(list(rewards)))
    return query
