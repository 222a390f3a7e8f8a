"""Persisting scored tasks and answering them: their audit rows written in one transaction (retried while
the store's failure is transient, never the reward), and each answer what the audit holds.

What a task returns is what the audit holds: the rows of an earlier delivery win over this one's
scores. Rows are built and written by :mod:`rewardq.storage.rows` and :mod:`rewardq.storage.record`;
once committed, this process's sealer is told their runs (:mod:`rewardq.workers.process.sealer`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from rewardq.wire.schema import STATUSES, ChunkResult, sample_count
from rewardq.workers.process import metrics
from rewardq.workers.rewards.base import Score, ScoreMeta
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.validate import Prepared

if TYPE_CHECKING:
    from rewardq.storage.record import Key, Stored

_NO_META = ScoreMeta()


@dataclass(frozen=True)
class ScoredTask:
    """A scored task on its way to the audit: which delivery of it (``attempts``), on which worker node
    (None: the host name)."""

    item: Prepared
    attempts: int = 1
    worker: str | None = None


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
    return _answers(runtime, [ScoredTask(item, attempts, worker)], retry_s)[0]


def persist_together(runtime: WorkerRuntime, tasks: Sequence[ScoredTask]) -> list[dict[str, Any] | Exception]:
    """Write several scored tasks' audit rows in one transaction (a coalesced flush) and return each
    task's answer, as :func:`persist` would, or the exception that failed it. When the store refuses
    that write for good (a bad row), each task is written alone, so that only a bad task fails."""
    from rewardq.storage.errors import is_transient

    try:
        return list(_answers(runtime, tasks, None))
    except Exception as e:
        if len(tasks) == 1 or is_transient(e):
            return [e] * len(tasks)
    out: list[dict[str, Any] | Exception] = []
    for task in tasks:
        try:
            out.extend(_answers(runtime, [task], None))
        except Exception as e:
            out.append(e)
    return out


def _answers(
    runtime: WorkerRuntime, tasks: Sequence[ScoredTask], retry_s: float | None
) -> list[dict[str, Any]]:
    """Write ``tasks``' rows in one transaction; each task's answer from what the audit holds."""
    from rewardq.storage.record import record_scores
    from rewardq.storage.rows import audit_rows

    finals = [[_consistent(s) for s in t.item.scores] for t in tasks]
    rows = [
        row
        for t, final in zip(tasks, finals, strict=True)
        for row in audit_rows(
            t.item.task,
            t.item.samples,
            final,
            scorer=t.item.scorer,
            latency_ms=t.item.latency_ms,
            attempts=t.attempts,
            worker_host=t.worker or runtime.host,
            worker_gpu=runtime.gpu,
            store_text=runtime.settings.store_text,
            group_keys=_sees_groups(runtime, t.item.task.reward),
        )
    ]
    budget = runtime.settings.audit_retry if retry_s is None else retry_s
    started = time.perf_counter()
    audited = record_scores(runtime.engine, rows, retry_s=budget)
    metrics.samples_audited(
        ((t.item.task.reward, f) for t, f in zip(tasks, finals, strict=True)), time.perf_counter() - started
    )
    runtime.sealer.wrote({t.item.task.run_id for t in tasks})
    return [_answer(t.item, final, audited) for t, final in zip(tasks, finals, strict=True)]


def _sees_groups(runtime: WorkerRuntime, reward: str) -> bool:
    """Whether the reward's kind scores whole groups (its rows then keep every sample's group key)."""
    spec = runtime.config.specs.get(reward)
    return spec is not None and runtime.config.kinds.resolve(spec.kind).sees == "group"


def _answer(item: Prepared, final: Sequence[Score], audited: Mapping[Key, Stored]) -> dict[str, Any]:
    task = item.task
    stored = [
        audited.get((task.batch_id, task.reward, task.offset + i)) or _as_stored(score)
        for i, score in enumerate(final)
    ]
    return answer(task.reward, task.offset, stored)


def _as_stored(score: Score) -> Stored:
    steps, ends = score.steps, score.step_ends
    return (
        score.value,
        score.status,
        score.error,
        None if steps is None else orjson.dumps(list(steps)).decode(),
        None if ends is None else orjson.dumps(list(ends)).decode(),
    )


def answer(reward: str, offset: int, scores: Sequence[Stored]) -> dict[str, Any]:
    """A task's answer, the schema's :class:`ChunkResult` as JSON-ready data, from each sample's stored
    score (value, status, error, step scores, step ends)."""
    result = ChunkResult(
        reward=reward,
        offset=offset,
        values=[score[0] for score in scores],
        statuses=[score[1] for score in scores],
        errors={i: score[2] for i, score in enumerate(scores) if score[2] is not None},
        steps={i: orjson.loads(score[3]) for i, score in enumerate(scores) if score[3] is not None},
        step_ends={i: orjson.loads(score[4]) for i, score in enumerate(scores) if score[4] is not None},
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
    ``meta`` is a ScoreMeta (its fields are audit columns), and steps are plain numbers (only ``ok``
    keeps them; a non-finite step score is None; ends that are not one per step are left out)."""
    if not isinstance(score, Score):
        return Score.failed(f"the reward returned {type(score).__name__}, not a Score", meta=_NO_META)
    if score.steps is not None or score.step_ends is not None:
        score = _plain_steps(score)
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


def _plain_steps(score: Score) -> Score:
    if score.status != "ok" or score.steps is None:
        return dataclasses.replace(score, steps=None, step_ends=None)
    try:
        steps = tuple(None if v is None or not math.isfinite(float(v)) else float(v) for v in score.steps)
        ends = None if score.step_ends is None else tuple(int(end) for end in score.step_ends)
    except (TypeError, ValueError) as e:
        return Score.failed(f"the reward returned malformed steps: {e}", score.raw, _meta(score))
    fit = ends if ends and len(ends) == len(steps) else None
    return dataclasses.replace(score, steps=steps, step_ends=fit)


def _meta(score: Score) -> ScoreMeta:
    return score.meta if isinstance(score.meta, ScoreMeta) else _NO_META
