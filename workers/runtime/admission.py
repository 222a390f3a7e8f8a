"""Admitting a delivery of the score task: each delivery is counted, and a task delivered more than
``max_deliveries`` times (its worker was lost each time) is parked in the dead-letter queue, audited
and answered ``error`` without being scored; a task whose envelope is malformed is parked too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from rewardq.wire.schema import PARKED_SCORER, queue_for
from rewardq.workers.rewards.base import Score
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.persist import persist, unkeyed_answer
from rewardq.workers.runtime.validate import InvalidTask, prepare

log = logging.getLogger(__name__)


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
        return count, unkeyed_answer(payload, error)
    item.scores = [Score.failed(error) if s is None else s for s in item.scores]
    item.scorer = PARKED_SCORER
    return count, persist(runtime, item, attempts=count, worker=worker)


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
