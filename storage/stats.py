"""A run's statistics per (step, reward), behind ``rewardq audit stats``: :func:`step_stats`.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Subquery, func, select

from rewardq.storage.models import scores_table
from rewardq.storage.queries import FINAL_STATUSES, run_filter
from rewardq.wire.schema import STATUSES

_c = scores_table.c


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


def step_stats(
    conn: Connection,
    run_id: str,
    *,
    rewards: Iterable[str] | None = None,
    step_min: int | None = None,
    step_max: int | None = None,
) -> list[StepStats]:
    """Per (step, reward) of ``run_id``: counts per status and mean/std/min/max of the ``ok`` values.

    Ordered by step (scores without a step last), then reward; filters as in
    :func:`rewardq.storage.queries.run_scores`.
    """
    rows = standing_rows(run_id, step_min, step_max, rewards).c
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
        .where(stands(rows))
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


def standing_rows(
    run_id: str,
    step_min: int | None,
    step_max: int | None,
    rewards: Iterable[str] | None,
    *columns: ColumnElement[Any],
) -> Subquery:
    """The run's rows (step, reward, value, status and ``columns``), each with the batch and scorer of the
    latest row of its (step, sample, reward); :func:`stands` keeps those that stand."""
    group, latest_first = (_c.step, _c.sample_hash, _c.reward), _c.id.desc()
    query = select(
        _c.step,
        _c.reward,
        _c.value,
        _c.status,
        _c.batch_id,
        _c.scorer,
        *columns,
        func.first_value(_c.batch_id).over(partition_by=group, order_by=latest_first).label("last_batch"),
        func.first_value(_c.scorer).over(partition_by=group, order_by=latest_first).label("last_scorer"),
    )
    return run_filter(query, run_id, step_min, step_max, rewards).subquery()


def stands(rows: Any) -> ColumnElement[bool]:
    """Whether a row of :func:`standing_rows` (its ``.c``) stands (the module's docstring says when)."""
    return (rows.batch_id == rows.last_batch) | (
        rows.status.in_(FINAL_STATUSES) & (rows.scorer == rows.last_scorer)
    )


def _population_std(mean: Any, mean_sq: Any, lo: Any, hi: Any) -> float | None:
    if mean is None:
        return None
    if lo == hi:  # one value, or all equal: exactly 0, not the rounding residue of E[x²] - E[x]²
        return 0.0
    return math.sqrt(max(float(mean_sq) - float(mean) ** 2, 0.0))
