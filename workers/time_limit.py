"""A task past its hard time limit is answered and audited as ``timeout``.

When a prefork pool kills a child for exceeding ``task_time_limit``, Celery calls the request's
``on_timeout`` in the worker's main process and, by default, stores a ``TimeLimitExceeded`` failure:
no audit row, and a client told nothing about which samples. :class:`HardTimeLimitRequest` instead
writes a ``timeout`` row for each valid sample of the payload (an invalid one keeps its own error),
stores a success result whose statuses are those rows' (so the client and the audit agree), and
acknowledges the message as Celery would. The main process builds its own audit engine on first use.

Only the prefork pool enforces time limits; solo and threads pools let a task run past them.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker import state
from celery.worker.request import Request

log = logging.getLogger(__name__)


class HardTimeLimitRequest(Request):
    """The score task's request: its hard time limit records ``timeout`` scores instead of a failure."""

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if soft or state.should_terminate:
            super().on_timeout(soft, timeout)
            return
        try:
            result = timed_out(self.task.app.rewardq_runtime, self, timeout)
        except Exception:
            log.exception("recording task %s's hard time limit in the audit failed", self.id)
            super().on_timeout(soft, timeout)
            return
        state.task_ready(self)
        log.error("Hard time limit (%ss) exceeded for %s[%s]: timeout", timeout, self.name, self.id)
        self.task.backend.mark_as_done(self.id, result, request=self._context)
        if self.task.acks_late and self.task.acks_on_failure_or_timeout:
            self.acknowledge()


def timed_out(runtime: Any, request: Request, timeout: float) -> dict[str, Any]:
    """Write the request's samples as ``timeout`` (once, no retry: this runs in the worker's main process)
    and return what the audit holds for them."""
    from rewardq.workers.rewards.base import Score
    from rewardq.workers.task import persist, prepare

    payload = request.args[0] if request.args else request.kwargs.get("payload")
    item = prepare(runtime, payload)
    error = f"task exceeded the hard time limit of {timeout:g}s"
    item.scores = [Score.timed_out(error) if s is None else s for s in item.scores]
    attempts = max(runtime.deliveries.current(request.id), 1)
    return persist(runtime, item, attempts=attempts, worker=request.hostname or None, retry_s=0)
