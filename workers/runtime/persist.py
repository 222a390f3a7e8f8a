"""Persisting a scored task and answering it: its audit rows written in one transaction (retried while
the store's failure is transient, never the reward), and the answer read back from what they hold.

What a task returns is what the audit holds: the rows of an earlier delivery win over this one's
scores. Rows are built and written by :mod:`rewardq.storage.rows` and :mod:`rewardq.storage.record`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rewardq.wire.schema import STATUSES, ChunkResult, sample_count
from rewardq.workers.rewards.base import Score, ScoreMeta
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.validate import Prepared

if TYPE_CHECKING:
    from rewardq.storage.record import Stored

_NO_META = ScoreMeta()


def persist(
    runtime: WorkerRuntime,
    item: Prepared,
    *,
    attempts: int = 1,
    worker: str | None = None,
    retry_s: float | None = None,
) -> dict[str, Any]:
    """Write a scored task's audit rows in one transaction and return what the audit holds for its
    samples, as a ChunkResult dict: the rows of an earlier delivery win over this one's scores (a
    redelivered task of a non-deterministic reward returns the first, audited values).

    ``worker`` is the Celery node name recorded as worker_host (default: the host name). A transient
    failure of the store retries the transaction, never the reward, for up to ``retry_s`` seconds
    (default: the ``audit_retry`` setting); a permanent one raises at once.
    """
    from rewardq.storage.record import record_scores
    from rewardq.storage.rows import audit_rows

    task = item.task
    final = [_consistent(s) for s in item.scores]
    rows = audit_rows(
        task,
        item.samples,
        final,
        scorer=item.scorer,
        latency_ms=item.latency_ms,
        attempts=attempts,
        worker_host=worker or runtime.host,
        worker_gpu=runtime.gpu,
        store_text=runtime.settings.store_text,
    )
    budget = runtime.settings.audit_retry if retry_s is None else retry_s
    audited = record_scores(runtime.engine, rows, chain_key=runtime.settings.chain_key, retry_s=budget)
    answers = [
        audited.get(task.offset + i, (score.value, score.status, score.error))
        for i, score in enumerate(final)
    ]
    return answer(task.reward, task.offset, answers)


def answer(reward: str, offset: int, scores: Sequence[Stored]) -> dict[str, Any]:
    """A task's answer, the schema's :class:`ChunkResult` as JSON-ready data, from each sample's
    (value, status, error)."""
    result = ChunkResult(
        reward=reward,
        offset=offset,
        values=[value for value, _, _ in scores],
        statuses=[status for _, status, _ in scores],
        errors={i: error for i, (_, _, error) in enumerate(scores) if error is not None},
    )
    return result.model_dump(mode="json")


def unkeyed_answer(payload: Any, error: str) -> dict[str, Any]:
    """The answer to a payload too malformed to key audit rows on: each of its samples, ``error``."""
    fields = payload if isinstance(payload, Mapping) else {}
    n = sample_count(fields)
    # Not validated: the payload's reward and offset may be anything, and are returned as given.
    result = ChunkResult.model_construct(
        reward=fields.get("reward"),
        offset=fields.get("offset") or 0,
        values=[None] * n,
        statuses=["error"] * n,
        errors=dict.fromkeys(range(n), error),
    )
    return result.model_dump(mode="json", warnings=False)


def _consistent(score: Score | None) -> Score:
    """What a reward returned, made fit for the audit: ``ok`` has a finite value, nothing else has one,
    and ``meta`` is a ScoreMeta (its fields are audit columns)."""
    if not isinstance(score, Score):
        return Score.failed(f"the reward returned {type(score).__name__}, not a Score", meta=_NO_META)
    if score.status == "ok":
        if not (
            isinstance(score.value, int | float)
            and not isinstance(score.value, bool)
            and math.isfinite(score.value)
        ):
            return Score.failed(
                f"the reward returned a non-finite or missing value: {score.value!r}", score.raw, _meta(score)
            )
    elif score.status not in STATUSES:
        return Score.failed(
            f"the reward returned an unknown status {score.status!r}", score.raw, _meta(score)
        )
    elif score.value is not None:
        return Score(None, score.status, score.error, score.raw, _meta(score))
    return score if isinstance(score.meta, ScoreMeta) else dataclasses.replace(score, meta=_NO_META)


def _meta(score: Score) -> ScoreMeta:
    return score.meta if isinstance(score.meta, ScoreMeta) else _NO_META
