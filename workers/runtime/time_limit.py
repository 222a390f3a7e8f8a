"""A task past its hard time limit is answered and audited as ``timeout``.

When a prefork pool kills a child for exceeding ``task_time_limit``, Celery's request handlers in the
worker's main process store, by default, a ``TimeLimitExceeded`` failure:
no audit row, and a client told nothing about which samples. :class:`HardTimeLimitRequest` instead
writes a ``timeout`` row for each valid sample of the payload (an invalid one keeps its own error),
stores a success result whose statuses are those rows' (so the client and the audit agree), and
acknowledges the message as Celery would. The main process builds its own audit engine on first use.

Only the prefork pool enforces time limits; solo and threads pools let a task run past them.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import TimeLimitExceeded
from celery.worker import state
from celery.worker.request import Request

log = logging.getLogger(__name__)


class HardTimeLimitRequest(Request):
    """The score task's request: its hard time limit records ``timeout`` scores instead of a failure.

    billiard reports a hard time limit twice, in this order: as the job's failure
    (``TimeLimitExceeded``, to ``on_failure``), then to ``on_timeout``. The answer is given at the
    first, before any client could read a failure; the second then has nothing left to do.
    """

    _timeout_recorded = False

    def on_failure(self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False) -> None:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, TimeLimitExceeded) and not state.should_terminate and self._record_timeout(exc):
            return
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft and self._timeout_recorded:
            return
        super().on_timeout(soft, timeout)

    def _record_timeout(self, exc: TimeLimitExceeded) -> bool:
        """Write the audit's ``timeout`` rows, store them as the task's result and acknowledge it; False
        (Celery's failure then stands) when they cannot be written."""
        given = exc.args[0] if exc.args else None
        limit = given or self.time_limits[1] or self.task.app.conf.task_time_limit
        try:
            result = timed_out(self.task.app.rewardq_runtime, self, float(limit))
        except Exception:
            log.exception("recording task %s's hard time limit in the audit failed", self.id)
            return False
        state.task_ready(self)
        log.error("Hard time limit (%ss) exceeded for %s[%s]: timeout", limit, self.name, self.id)
        self.task.backend.mark_as_done(self.id, result, request=self._context)
        if self.task.acks_late and self.task.acks_on_failure_or_timeout:
            self.acknowledge()
        self._timeout_recorded = True
        return True


def timed_out(runtime: Any, request: Request, timeout: float) -> dict[str, Any]:
    """Write the request's samples as ``timeout`` (once, no retry: this runs in the worker's main process)
    and return what the audit holds for them."""
    from rewardq.wire.schema import stored_reference
    from rewardq.workers.rewards.base import Score
    from rewardq.workers.runtime.admission import with_samples
    from rewardq.workers.runtime.persist import persist
    from rewardq.workers.runtime.validate import prepare

    payload = request.args[0] if request.args else request.kwargs.get("payload")
    if (reference := stored_reference(payload)) is not None:  # the child had read them, not this process
        payload = with_samples(payload, runtime.process.broker.get(reference[0]), reference[1])
    item = prepare(runtime, payload)
    error = f"task exceeded the hard time limit of {timeout:g}s"
    item.scores = [Score.timed_out(error) if s is None else s for s in item.scores]
    attempts = runtime.deliveries.current(request.id)
    try:
        return persist(runtime, item, attempts=attempts, worker=request.hostname or None, retry_s=0)
    finally:
        runtime.deliveries.settle(request.id)
