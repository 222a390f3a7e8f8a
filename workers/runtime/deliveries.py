"""How many times each task has been delivered to a worker, so that a poison task (one whose reward kills
its worker every time) stops after ``max_deliveries`` instead of looping forever.

A first delivery is not counted anywhere: it is implied. Every redelivery (a message kombu put back on
its queue, marked ``redelivered``: its worker died, was lost past the visibility timeout, or stopped
mid-task) counts once: ``INCR rewardq:deliveries:<id>`` in the broker's Redis, expiring with the results
(``result_expires``); deliveries = redeliveries + 1. Celery's own ``retries`` cannot count these: a
worker that is killed never gets to increment anything in the message. So the task of a healthy fleet,
delivered once, costs no Redis round trip here (before issue 19 every task paid an INCR and a DEL).
Embedded (the in-memory broker), the counter lives in the process, as the broker does (``MemoryKV``).
"""

from __future__ import annotations

import logging

from rewardq.wire.keys import deliveries_key
from rewardq.wire.settings import Settings
from rewardq.workers.process.kv import KeyValue

log = logging.getLogger(__name__)


class Deliveries:
    """The delivery counter of tasks in the broker's key-value store (see ``broker_kv``)."""

    def __init__(self, settings: Settings, client: KeyValue) -> None:
        self.limit = settings.max_deliveries
        self.expires = settings.result_expires
        self.client = client

    def count(self, task_id: str) -> int:
        """Count a redelivery of ``task_id``; returns how many deliveries there have been, this one and
        the first included."""
        return self.client.incr(deliveries_key(task_id), self.expires) + 1

    def count_and_read(self, task_id: str, key: str) -> tuple[int, bytes | None]:
        """:meth:`count`, and the value under ``key`` (the task's stored samples) in the same round trip."""
        redeliveries, value = self.client.incr_get(deliveries_key(task_id), self.expires, key)
        return redeliveries + 1, value

    def settle(self, *task_ids: str) -> None:
        """Forget the tasks' counts once a delivery ran to its end (answered, parked or failed), so that
        only tasks in flight hold a key: the counts of a run's millions of tasks would otherwise fill
        Redis until they expire. A failure here is logged, never raised (the key then expires)."""
        try:
            self.client.delete(*(deliveries_key(task_id) for task_id in task_ids))
        except Exception as e:
            log.warning("could not clear the delivery counts of tasks %s: %s", ", ".join(task_ids), e)

    def current(self, task_id: str) -> int:
        """How many deliveries of ``task_id`` there have been (1 when it was never redelivered)."""
        value = self.client.get(deliveries_key(task_id))
        return int(value) + 1 if value is not None else 1

    def exceeded(self, count: int) -> bool:
        """True when a task delivered ``count`` times must not be scored again."""
        return count > self.limit


def parked_error(deliveries: int) -> str:
    """The error every sample of a parked task gets."""
    return (
        f"parked in the dead-letter queue after {deliveries} deliveries: its worker was lost each time; "
        "see `rewardq dlq list`"
    )
