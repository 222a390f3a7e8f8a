"""Admitting a delivery of the score task: each delivery is counted, and a task delivered more than
``max_deliveries`` times (its worker was lost each time) is parked in the dead-letter queue, audited
and answered ``error`` without being scored; a task whose envelope is malformed is parked too.

A task whose samples are stored in the broker's Redis (:mod:`rewardq.stored_samples`) has them read in
the same round trip as its delivery count, and put into its payload: from there on, and in the
dead-letter queue, the task holds its samples inline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson

from rewardq.wire.schema import PARKED_SCORER, STORED, queue_for, stored_reference
from rewardq.workers.rewards.base import Score
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.persist import persist, unkeyed_answer
from rewardq.workers.runtime.validate import InvalidTask, prepare

log = logging.getLogger(__name__)

READ_RETRY_S = 30.0
"""How long a task whose samples are stored waits for the broker's Redis to come back to read them."""


def admit(
    runtime: WorkerRuntime,
    task_id: str,
    payload: Any,
    queue: str | None,
    worker: str | None = None,
    *,
    redelivered: bool = False,
) -> tuple[int, Any, dict[str, Any] | None]:
    """Count this delivery of a task when it is a redelivery (:mod:`~rewardq.workers.runtime.deliveries`)
    and read its stored samples into its payload, in one round trip; returns the count, the payload and,
    when the task has been delivered too often, the answer of the task parked in the dead-letter queue,
    else None. A parked task's samples are audited and answered ``error`` (the audit holds one row per
    submitted sample and reward, and the answer agrees with it); a replay scores them again as a new
    batch."""
    from rewardq.workers.runtime.deliveries import parked_error
    from rewardq.workers.runtime.dlq import task_letter

    reference = stored_reference(payload)
    if reference is not None:
        count, stored = _count_and_read(runtime, task_id, reference[0], redelivered)
        payload = with_samples(payload, stored, reference[1])
    elif not redelivered:
        return 1, payload, None
    else:
        try:
            count = runtime.deliveries.count(task_id)
        except Exception as e:  # the broker's Redis is away: scoring the task matters more than counting it
            log.warning("could not count the deliveries of task %s (%s): scoring it uncounted", task_id, e)
            return 2, payload, None
    if not runtime.deliveries.exceeded(count):
        return count, payload, None
    error = parked_error(count)
    log.error("task %s: %s", task_id, error)
    runtime.dead_letters.park(task_letter(task_id, payload, error, count, queue or _queue_of(payload)))
    try:
        item = prepare(runtime, payload)
    except InvalidTask:  # nothing to key audit rows on: the answer alone
        return count, payload, unkeyed_answer(payload, error)
    item.scores = [Score.failed(error) if s is None else s for s in item.scores]
    item.scorer = PARKED_SCORER
    return count, payload, persist(runtime, item, attempts=count, worker=worker)


def redelivered(delivery_info: Mapping[str, Any] | None) -> bool:
    """Whether a delivery is a redelivery: kombu marks a message it put back on its queue."""
    return bool((delivery_info or {}).get("redelivered"))


def with_samples(payload: Mapping[str, Any], stored: bytes | None, count: int) -> Any:
    """The payload with its stored samples inline; as it is when they are gone or not a JSON list of
    ``count`` (validation then refuses it, saying so)."""
    if stored is None:
        return payload
    try:
        samples = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return payload
    if not isinstance(samples, list) or len(samples) != count:
        return payload
    return {k: v for k, v in payload.items() if k != STORED} | {"samples": samples}


def _count_and_read(
    runtime: WorkerRuntime, task_id: str, key: str, redelivered: bool
) -> tuple[int, bytes | None]:
    """Count the delivery (a redelivery only) and read the samples under ``key``, waiting up to
    READ_RETRY_S for a broker that is away (a task cannot be scored without its samples)."""
    deadline = time.monotonic() + READ_RETRY_S
    while True:
        try:
            if not redelivered:
                return 1, runtime.process.broker.get(key)
            return runtime.deliveries.count_and_read(task_id, key)
        except Exception as e:
            if time.monotonic() + 1.0 > deadline:
                raise
            log.warning("task %s: could not read its samples (%s); retrying", task_id, e)
            time.sleep(1.0)


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
