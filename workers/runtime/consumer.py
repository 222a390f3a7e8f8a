"""The worker's message consumer: Celery's, plus a record in the dead-letter queue of every message it
cannot take: content it may not decode (a pickled body) or cannot, a message that is no task, a task
name it does not know, an invalid task message. The raw body is kept (truncated, never unpickled); then
the base class does what it always does (log, acknowledge or reject), and the worker stays up.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer

from rewardq.workers.runtime.dlq import message_letter

log = logging.getLogger(__name__)


class RecordingConsumer(Consumer):
    """Celery's consumer, recording the messages it refuses in ``app.rewardq_runtime.dead_letters``."""

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._record(message, f"undecodable message: {type(exc).__name__}: {exc}")
        super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._record(message, "not a task message (no task name)")
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        name = (getattr(message, "headers", None) or {}).get("task")
        self._record(message, f"unknown task name {name!r}")
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._record(message, f"refused message: {type(exc).__name__}: {exc}")
        super().on_invalid_task(body, message, exc)

    def _record(self, message: Any, reason: str) -> None:
        try:
            self.app.rewardq_runtime.dead_letters.park(message_letter(message, reason))
        except Exception:  # the broker may be what failed: the message is still refused as before
            log.exception("recording a refused message in the dead-letter queue failed")
