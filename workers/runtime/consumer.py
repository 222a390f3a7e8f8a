"""The worker's message consumer: Celery's, except that every message it will not run is parked in the
dead-letter queue, acknowledged and logged in one line, and the worker goes on.

Refused: content it may not decode (a pickled body) or cannot, a message that is no task, a task name
other than ``rewardq.score``, a score task whose id, schedule or body is not what the producer sends
(:func:`score_message_problem`), and any message Celery fails to build a request from (its strategy
unpacks the body: ``{"x": 1}`` raised a ValueError out of the event loop and the worker stopped, the
message went back to the queue, and every worker after it stopped too). The raw body is kept
(truncated, never unpickled). Connection errors still propagate: Celery reconnects, and the message,
unacknowledged, comes back.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import NotRegistered
from celery.worker.consumer import Consumer
from vine import promise

from rewardq.wire.schema import TASK_NAME
from rewardq.workers.runtime.dlq import REASON_LIMIT, message_letter

log = logging.getLogger(__name__)

EMBED_KEYS = {"callbacks", "errbacks", "chain", "chord"}  # Celery's, all None for a score task


class RecordingConsumer(Consumer):
    """Celery's consumer, refusing what it cannot run into ``app.rewardq_runtime.dead_letters``."""

    def create_task_handler(self, promise: Any = promise) -> Any:
        run = super().create_task_handler(promise)
        broker_errors = tuple(self.connection_errors) + tuple(self.channel_errors)

        def on_task_received(message: Any) -> None:
            try:
                headers = message.headers
                if not isinstance(headers, dict) or "task" not in headers:
                    return self.on_unknown_message(None, message)
                if headers["task"] != TASK_NAME:
                    return self.on_unknown_task(None, message, NotRegistered(headers["task"]))
                if (problem := score_message_problem(message)) is not None:
                    return self._refuse(message, problem)
                run(message)
            except broker_errors:
                raise
            except Exception as e:  # Celery could not build a request from it
                self._refuse(message, f"malformed message: {type(e).__name__}: {e}")
            return None

        return on_task_received

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._refuse(message, f"undecodable message: {type(exc).__name__}: {exc}")

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._refuse(message, "not a task message (no task name)")

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        headers = message.headers if isinstance(message.headers, dict) else {}
        self._refuse(message, f"unknown task name {headers.get('task')!r}")
        task_id = headers.get("id")
        if isinstance(task_id, str) and task_id:  # its sender, if it waits, is answered
            try:
                self.app.backend.mark_as_failure(task_id, NotRegistered(headers.get("task")))
            except Exception as e:
                log.error("could not store the failure of unknown task %s: %r", task_id, e)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._refuse(message, f"refused message: {type(exc).__name__}: {exc}")

    def _refuse(self, message: Any, reason: str) -> None:
        """Park ``message`` raw with ``reason``, log one line, and acknowledge it."""
        reason = " ".join(reason.split())[:REASON_LIMIT]
        try:
            kept = self.app.rewardq_runtime.dead_letters.park_new(message_letter(message, reason))
        except Exception as e:  # the broker may be what failed: the message is still refused
            kept = None
            log.error("recording a refused message in the dead-letter queue failed: %r", e)
        log.error("refused a message, parked as %s: %s", kept, reason)
        if not message.acknowledged:
            message.ack_log_error(log, self.connection_errors)


def score_message_problem(message: Any) -> str | None:
    """What is wrong with a ``rewardq.score`` message that Celery would take, or None. Its id is a
    non-empty string; it has no ``eta`` or ``expires`` (the producer sends none); its ``timelimit`` is
    one the pool can set timers for (a bad one stopped the worker once the pool took the task); its
    body decodes to one payload object as the only argument, no keyword arguments, and no callbacks,
    chain or chord."""
    headers = message.headers
    task_id = headers.get("id")
    if not isinstance(task_id, str) or not task_id:
        return f"task id {task_id!r} is not a non-empty string"
    for field in ("eta", "expires"):
        if headers.get(field) is not None:
            return f"{field} {headers[field]!r}: a score task is never delayed or expired"
    limits = headers.get("timelimit")
    if limits is not None and not (
        isinstance(limits, list | tuple) and len(limits) == 2 and all(map(_limit, limits))
    ):
        return f"timelimit {limits!r}: not [hard, soft] seconds (each a positive number or null)"
    try:
        body = message.decode()
    except Exception as e:
        return f"undecodable message: {type(e).__name__}: {e}"
    if not isinstance(body, list | tuple) or len(body) != 3:
        return f"body is a {type(body).__name__}, not [args, kwargs, embed]"
    args, kwargs, embed = body
    if not isinstance(args, list | tuple) or len(args) != 1 or not isinstance(args[0], dict):
        return "args: not a list of one payload object"
    if kwargs != {}:
        return "kwargs: a score task takes none"
    if not isinstance(embed, dict) or set(embed) - EMBED_KEYS or any(v is not None for v in embed.values()):
        return "embed: a score task has no callbacks, errbacks, chain or chord"
    return None


def _limit(value: Any) -> bool:
    """A time limit Celery's pool can set a timer for: null, or a positive finite number of seconds."""
    if value is None:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < float("inf")
