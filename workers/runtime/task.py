"""The score task: validate → score → persist → return, for one (chunk, reward).

A malformed sample is recorded as that sample's ``error``; a reward that fails to build or raises
fails its chunk's samples with the error text; neither crashes the worker. A malformed envelope
(no batch, reward or offset to key the audit on) fails the task with :class:`InvalidTask` and is
recorded in the dead-letter queue; so is a task delivered more than ``max_deliveries`` times (its
worker was lost each time), which is audited and answered ``error`` without being scored.

What a task returns is what the audit holds; an audit-store outage retries the write, not the reward.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from celery import Celery, Task
from pydantic import TypeAdapter, ValidationError

from rewardq.samples import JSON_TOO_DEEP, describe_errors, json_size
from rewardq.storage.text import storable_text
from rewardq.wire.errors import RewardqError
from rewardq.wire.schema import (
    STATUSES,
    TASK_NAME,
    Sample,
    TaskEnvelope,
    queue_for,
    sample_id_of,
    sample_id_problem,
)
from rewardq.workers.rewards.base import Score, ScoreMeta
from rewardq.workers.runtime.context import WorkerRuntime

log = logging.getLogger(__name__)

_SAMPLES = TypeAdapter(list[Sample])
_SAMPLE = TypeAdapter(Sample)


class InvalidTask(RewardqError):
    """Raised when a task's envelope is malformed, so it can be neither scored nor audited."""


def register_score_task(app: Celery, runtime: WorkerRuntime) -> Task:
    """Register ``rewardq.score`` on ``app``: each delivery is counted (a task delivered more than
    ``max_deliveries`` times is parked, not scored), a malformed envelope is parked and fails, and a
    task past its hard time limit is recorded as ``timeout`` (:mod:`rewardq.workers.runtime.time_limit`)."""
    from rewardq.workers.runtime.time_limit import HardTimeLimitRequest

    # shared=False: a shared task would also be registered on every app finalized later in this process
    # (a second embedded worker), which would then run the first app's runtime. throws: no traceback.
    @app.task(name=TASK_NAME, bind=True, shared=False, Request=HardTimeLimitRequest, throws=(InvalidTask,))
    def score(self: Task, payload: Mapping[str, Any]) -> dict[str, Any]:
        request = self.request
        queue = (request.delivery_info or {}).get("routing_key")
        try:
            deliveries, parked = admit(runtime, request.id, payload, queue, request.hostname or None)
            if parked is not None:
                return parked
            try:
                return score_payload(runtime, payload, attempts=deliveries, worker=request.hostname or None)
            except InvalidTask as e:
                park_invalid(runtime, request.id, payload, e, deliveries, queue)
                raise
        finally:  # not reached when the process dies: the count then survives to the next delivery
            runtime.deliveries.settle(request.id)

    return score


def admit(
    runtime: WorkerRuntime, task_id: str, payload: Any, queue: str | None, worker: str | None = None
) -> tuple[int, dict[str, Any] | None]:
    """Count this delivery of a task; returns the count and, when the task has been delivered too
    often, the answer of the task parked in the dead-letter queue, else None. A parked task's samples
    are audited and answered ``error`` (the audit holds one row per submitted sample and reward, and
    the answer agrees with it); a replay scores them again as a new batch."""
    from rewardq.workers.runtime.deliveries import parked_error
    from rewardq.workers.runtime.dlq import task_letter

    try:
        count = runtime.deliveries.count(task_id)
    except Exception as e:  # the broker's Redis is away: scoring the task matters more than counting it
        log.warning("could not count the deliveries of task %s (%s): scoring it uncounted", task_id, e)
        return 1, None
    if not runtime.deliveries.exceeded(count):
        return count, None
    error = parked_error(count)
    log.error("task %s: %s", task_id, error)
    runtime.dead_letters.park(task_letter(task_id, payload, error, count, queue or _queue_of(payload)))
    try:
        item = prepare(runtime, payload)
    except InvalidTask:  # nothing to key audit rows on: the answer alone
        pass
    else:
        item.scores = [Score.failed(error) if s is None else s for s in item.scores]
        item.scorer = "parked"
        return count, persist(runtime, item, attempts=count, worker=worker)
    fields = payload if isinstance(payload, Mapping) else {}
    samples = fields.get("samples")
    n = len(samples) if isinstance(samples, list) else 0
    return count, {
        "reward": fields.get("reward"),
        "offset": fields.get("offset") or 0,
        "values": [None] * n,
        "statuses": ["error"] * n,
        "errors": {str(i): error for i in range(n)},
    }


def park_invalid(
    runtime: WorkerRuntime, task_id: str, payload: Any, error: InvalidTask, deliveries: int, queue: str | None
) -> None:
    """Record a task whose envelope is malformed in the dead-letter queue (it still fails)."""
    from rewardq.workers.runtime.dlq import task_letter

    letter = task_letter(task_id, payload, str(error), deliveries, queue or _queue_of(payload))
    runtime.dead_letters.park(letter)


def _queue_of(payload: Any) -> str | None:
    reward = payload.get("reward") if isinstance(payload, Mapping) else None
    return queue_for(reward) if isinstance(reward, str) else None


def score_payload(
    runtime: WorkerRuntime, payload: Mapping[str, Any], *, attempts: int = 1, worker: str | None = None
) -> dict[str, Any]:
    """Score one task payload, write its audit rows in one transaction, return the ChunkResult dict.

    ``worker`` is the Celery node name recorded as the audit's worker_host (default: the host name).
    """
    prepared = prepare(runtime, payload)
    score_together(runtime, [prepared])
    return persist(runtime, prepared, attempts=attempts, worker=worker)


@dataclass
class Prepared:
    """A validated task on its way through score → persist; ``scores`` fill in as it goes."""

    task: TaskEnvelope
    samples: list[Sample | None]
    scores: list[Score | None]
    scorer: str = "unavailable"
    latency_ms: float = 0.0


def prepare(runtime: WorkerRuntime, payload: Mapping[str, Any]) -> Prepared:
    """Validate a payload's envelope (InvalidTask if malformed) and each of its samples."""
    try:
        task = TaskEnvelope.model_validate(payload)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}"
            for err in e.errors(include_url=False)
        )
        log.error("rejected task: %s", problems)
        raise InvalidTask(f"rejected task: {problems}") from e
    samples, scores = _validate_samples(task.samples, runtime.settings.max_record_bytes)
    return Prepared(task, samples, scores)


def score_together(runtime: WorkerRuntime, items: Sequence[Prepared]) -> None:
    """Score tasks of one reward in a single call to the reward, as if each had been scored alone.

    Every item gets the call's scorer fingerprint and latency; a reward's scores do not depend on
    what a sample is batched with, so coalescing changes no value.
    """
    names = {item.task.reward for item in items}
    if len(names) != 1:
        raise ValueError(f"score_together takes tasks of one reward, got {sorted(names)}")
    samples = [s for item in items for s in item.samples]
    scores = [s for item in items for s in item.scores]
    scorer, latency_ms = _score(runtime, names.pop(), samples, scores)
    start = 0
    for item in items:
        end = start + len(item.scores)
        item.scores, item.scorer, item.latency_ms = scores[start:end], scorer, latency_ms
        start = end


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

    A transient failure of the store (storage.errors.is_transient) retries the transaction, never the
    reward, with backoff (1, 2, 4 … 30 s) for up to ``retry_s`` seconds (default: the
    ``audit_retry`` setting); a permanent one raises at once.
    """
    task = item.task
    final = [_consistent(s) for s in item.scores]
    rows = _audit_rows(
        runtime,
        task,
        item.samples,
        final,
        item.scorer,
        item.latency_ms,
        attempts,
        worker or runtime.host,
    )
    budget = runtime.settings.audit_retry if retry_s is None else retry_s
    audited = _write_with_retry(runtime, task, rows, budget)
    values: list[float | None] = []
    statuses: list[str] = []
    errors: dict[str, str] = {}
    for i, score in enumerate(final):
        value, status, error = audited.get(task.offset + i, (score.value, score.status, score.error))
        values.append(value)
        statuses.append(status)
        if error is not None:
            errors[str(i)] = error
    return {
        "reward": task.reward,
        "offset": task.offset,
        "values": values,
        "statuses": statuses,
        "errors": errors,
    }


def _write_with_retry(
    runtime: WorkerRuntime, task: TaskEnvelope, rows: list[dict[str, Any]], budget_s: float
) -> dict[int, tuple[float | None, str, str | None]]:
    """Write ``rows`` and read back the task's stored (value, status, error) by sample index, in one
    transaction; retried while the store's failure is transient and ``budget_s`` lasts."""
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    from rewardq.storage import scores_table, write_scores
    from rewardq.storage.errors import is_transient

    c = scores_table.c
    stored = (
        select(c.sample_index, c.value, c.status, c.error)
        .where(c.batch_id == task.batch_id, c.reward == task.reward)
        .where(c.sample_index.between(task.offset, task.offset + len(rows) - 1))
    )
    deadline = time.monotonic() + budget_s
    delay, attempt = 1.0, 0
    while True:
        attempt += 1
        try:
            with runtime.engine.begin() as conn:
                write_scores(conn, rows, chain_key=runtime.settings.chain_key)
                return {r.sample_index: (r.value, r.status, r.error) for r in conn.execute(stored)}
        except DBAPIError as e:
            if not is_transient(e):
                log.error("audit write refused, not retried: %s", e)
                raise
            if time.monotonic() + delay > deadline:
                log.error("audit write failed %d times in %.0fs, giving up: %s", attempt, budget_s, e)
                raise
            log.warning("audit write failed (attempt %d), retrying in %.0fs: %s", attempt, delay, e)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def _validate_samples(raw: Sequence[Any], max_bytes: int) -> tuple[list[Sample | None], list[Score | None]]:
    """Validate each sample again at the worker; invalid ones get an error score, the rest stay None."""
    scores: list[Score | None] = [None] * len(raw)
    sizes = [json_size(s) if isinstance(s, dict) else 0 for s in raw]
    if all(size is not None and size <= max_bytes for size in sizes):
        try:
            return list(_SAMPLES.validate_python(raw)), scores
        except ValidationError:
            pass
    samples: list[Sample | None] = []
    for i, (item, size) in enumerate(zip(raw, sizes, strict=True)):
        if size is None:
            scores[i] = Score.failed(f"invalid sample: {JSON_TOO_DEEP}")
            samples.append(None)
            continue
        if size > max_bytes:
            scores[i] = Score.failed(
                f"invalid sample: {size} bytes as JSON, over the limit of {max_bytes} "
                "(the workers' REWARDQ_MAX_RECORD_BYTES)"
            )
            samples.append(None)
            continue
        try:
            samples.append(_SAMPLE.validate_python(item))
        except ValidationError as e:
            problem = describe_errors(e.errors(include_url=False))
            scores[i] = Score.failed(
                f"invalid sample: field '{problem.field or 'sample'}': {problem.message}"
            )
            samples.append(None)
    return samples, scores


def _score(
    runtime: WorkerRuntime, name: str, samples: list[Sample | None], scores: list[Score | None]
) -> tuple[str, float]:
    """Fill ``scores`` for the valid samples; returns the scorer's fingerprint and the latency in ms."""
    valid = [i for i, s in enumerate(samples) if s is not None]
    try:
        reward = runtime.reward(name)
    except RewardqError as e:
        error, scorer = str(e), "unavailable"
    except Exception as e:  # a reward that fails to build (missing model …) fails its samples, not the worker
        log.exception("building reward %s failed", name)
        error, scorer = f"reward {name!r} failed to load: {type(e).__name__}: {e}", "unavailable"
    else:
        scorer = reward.fingerprint
        started = time.perf_counter()
        try:
            out = reward.score([samples[i] for i in valid])
            if len(out) != len(valid):
                raise RuntimeError(f"returned {len(out)} scores for {len(valid)} samples")
        except Exception as e:
            log.exception("reward %s failed on a chunk", name)
            out = [Score.failed(f"reward {name!r} failed: {type(e).__name__}: {e}")] * len(valid)
        for i, score in zip(valid, out, strict=True):
            scores[i] = score
        return scorer, (time.perf_counter() - started) * 1000.0
    for i in valid:
        scores[i] = Score.failed(error)
    return scorer, 0.0


def _consistent(score: Score | None) -> Score:
    """What a reward returned, made fit for the audit: ``ok`` has a finite value, nothing else has one."""
    if not isinstance(score, Score):
        return Score.failed(f"the reward returned {type(score).__name__}, not a Score")
    if score.status == "ok":
        if (
            isinstance(score.value, int | float)
            and not isinstance(score.value, bool)
            and math.isfinite(score.value)
        ):
            return score
        return Score.failed(
            f"the reward returned a non-finite or missing value: {score.value!r}", score.raw, score.meta
        )
    if score.status not in STATUSES:
        return Score.failed(f"the reward returned an unknown status {score.status!r}", score.raw, score.meta)
    if score.value is not None:
        return Score(None, score.status, score.error, score.raw, score.meta)
    return score


def sample_hash(item: Any) -> str:
    """Content hash of a sample: sha256 of its canonical JSON (prompt, completion, columns)."""
    if isinstance(item, dict):
        item = {
            "prompt": item.get("prompt"),
            "completion": item.get("completion"),
            "columns": item.get("columns") or {},
        }
    try:
        canonical = orjson.dumps(item, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:  # nested deeper than orjson encodes (an invalid sample): the standard encoder
        canonical = json.dumps(item, sort_keys=True, default=repr).encode()
    return hashlib.sha256(canonical).hexdigest()


def _sample_id(item: Any) -> str | None:
    """The sample's id for the audit; None when it has none or the store cannot hold it (that sample
    is then an invalid sample, and the others of its chunk are written as usual)."""
    columns = item.get("columns") if isinstance(item, dict) else None
    if not isinstance(columns, dict) or sample_id_problem(columns) is not None:
        return None
    return sample_id_of(columns)


def _audit_rows(
    runtime: WorkerRuntime,
    task: TaskEnvelope,
    samples: list[Sample | None],
    scores: list[Score],
    scorer: str,
    latency_ms: float,
    attempts: int,
    worker: str,
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    store_text = runtime.settings.store_text
    rows = []
    for i, (item, sample, score) in enumerate(zip(task.samples, samples, scores, strict=True)):
        row = {
            "run_id": task.run_id,
            "step": task.step,
            "batch_id": task.batch_id,
            "sample_index": task.offset + i,
            "sample_hash": sample_hash(item),
            "sample_id": _sample_id(item),
            "reward": task.reward,
            "scorer": scorer,
            "value": score.value,
            "status": score.status,
            "error": storable_text(score.error),
            "raw": storable_text(score.raw),
            "latency_ms": latency_ms,
            "attempts": attempts,
            "worker_host": worker,
            "worker_gpu": runtime.gpu,
            "created_at": now,
            "prompt_text": None,
            "completion_text": None,
            **_meta_columns(score.meta),
        }
        if store_text and sample is not None:
            prompt = sample.prompt
            text = prompt if isinstance(prompt, str | None) else orjson.dumps(prompt).decode()
            row["prompt_text"] = storable_text(text)
            row["completion_text"] = storable_text(sample.completion_text)
        rows.append(row)
    return rows


_NO_META = ScoreMeta()


def _meta_columns(meta: ScoreMeta | None) -> dict[str, Any]:
    """The audit columns of a score's meta (all None when it has none)."""
    meta = meta if isinstance(meta, ScoreMeta) else _NO_META
    return {
        "truncated": meta.truncated,
        "cache_hit": meta.cache_hit,
        "http_attempts": meta.http_attempts,
        "replica": meta.replica,
        "prompt_tokens": meta.prompt_tokens,
        "completion_tokens": meta.completion_tokens,
        "template_hash": meta.template_hash,
    }
