"""How many times each task has been delivered to a worker, so that a poison task (one whose reward kills
its worker every time) stops after ``max_deliveries`` instead of looping forever.

Every execution of a task, first delivery or redelivery, counts once: ``INCR rewardq:deliveries:<id>``
in the broker's Redis, expiring with the results (``result_expires``). Celery's own ``retries`` cannot
count these: a worker that is killed never gets to increment anything in the message. Embedded (the
in-memory broker), the counter lives in the process, as the broker does.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from rewardq.serving import redis_client
from rewardq.wire.keys import deliveries_key
from rewardq.wire.settings import Settings

log = logging.getLogger(__name__)


def broker_redis(settings: Settings) -> Any:
    """A Redis client of the broker (with its TLS options), or an in-process stand-in when embedded.

    Nothing connects until the first command."""
    if settings.embedded or not settings.broker_url:
        return MemoryRedis()
    return redis_client(settings)


class MemoryRedis:
    """The few Redis commands deliveries and the dead-letter queue use, in process memory (embedded)."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def _live(self, key: str) -> Any:
        if key in self._expiry and self._expiry[key] < time.monotonic():
            self._values.pop(key, None)
            self._expiry.pop(key, None)
        return self._values.get(key)

    def incr(self, key: str) -> int:
        with self._lock:
            value = int(self._live(key) or 0) + 1
            self._values[key] = value
            return value

    def expire(self, key: str, seconds: int) -> None:
        with self._lock:
            self._expiry[key] = time.monotonic() + seconds

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._values.pop(key, None)
                self._expiry.pop(key, None)

    def get(self, key: str) -> Any:
        with self._lock:
            value = self._live(key)
            return None if value is None else str(value).encode()

    def hset(self, key: str, field: str, value: str) -> None:
        with self._lock:
            self._values.setdefault(key, {})[field] = value.encode()

    def hsetnx(self, key: str, field: str, value: str) -> bool:
        with self._lock:
            fields = self._values.setdefault(key, {})
            if field in fields:
                return False
            fields[field] = value.encode()
            return True

    def hget(self, key: str, field: str) -> bytes | None:
        with self._lock:
            return dict(self._values.get(key) or {}).get(field)

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        with self._lock:
            return {k.encode(): v for k, v in (self._values.get(key) or {}).items()}

    def hdel(self, key: str, field: str) -> int:
        with self._lock:
            return 1 if (self._values.get(key) or {}).pop(field, None) is not None else 0


class Deliveries:
    """The delivery counter of tasks; ``client`` is the broker's Redis (see :func:`broker_redis`)."""

    def __init__(self, settings: Settings, client: Any) -> None:
        self.limit = settings.max_deliveries
        self.expires = settings.result_expires
        self.client = client

    def count(self, task_id: str) -> int:
        """Count one more delivery of ``task_id``; returns how many there have been, this one included."""
        key = deliveries_key(task_id)
        count = int(self.client.incr(key))
        self.client.expire(key, self.expires)
        return count

    def settle(self, *task_ids: str) -> None:
        """Forget the tasks' counts once a delivery ran to its end (answered, parked or failed), so that
        only tasks in flight hold a key: the counts of a run's millions of tasks would otherwise fill
        Redis until they expire. A failure here is logged, never raised (the key then expires)."""
        try:
            self.client.delete(*(deliveries_key(task_id) for task_id in task_ids))
        except Exception as e:
            log.warning("could not clear the delivery counts of tasks %s: %s", ", ".join(task_ids), e)

    def current(self, task_id: str) -> int:
        """How many deliveries of ``task_id`` were counted (0 if none)."""
        value = self.client.get(deliveries_key(task_id))
        return int(value) if value is not None else 0

    def exceeded(self, count: int) -> bool:
        """True when a task delivered ``count`` times must not be scored again."""
        return count > self.limit


def parked_error(deliveries: int) -> str:
    """The error every sample of a parked task gets."""
    return (
        f"parked in the dead-letter queue after {deliveries} deliveries: its worker was lost each time; "
        "see `rewardq dlq list`"
    )
