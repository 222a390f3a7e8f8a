"""The score task, ``rewardq.score``: validate → score → persist → return, for one (chunk, reward).

A malformed sample is recorded as that sample's ``error``; a reward that fails to build or raises
fails its chunk's samples with the error text; neither crashes the worker. A malformed envelope
(no batch, reward or offset to key the audit on) fails the task with :class:`InvalidTask` and is
recorded in the dead-letter queue; so is a task delivered more than ``max_deliveries`` times
(:mod:`~rewardq.workers.runtime.admission`).

What a task returns is what the audit holds; an audit-store outage retries the write, not the reward
(:mod:`~rewardq.workers.runtime.persist`). A task whose reward is stuck in this worker is handed back,
requeued for another worker (:mod:`~rewardq.workers.runtime.watchdog`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject

from rewardq.wire.schema import TASK_NAME
from rewardq.workers.runtime.admission import admit, park_invalid, redelivered
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.persist import persist
from rewardq.workers.runtime.scoring import score_together
from rewardq.workers.runtime.validate import InvalidTask, prepare
from rewardq.workers.runtime.watchdog import HandBack

__all__ = ["InvalidTask", "register_score_task", "score_payload"]


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
        again = redelivered(request.delivery_info)
        try:
            deliveries, payload, parked = admit(
                runtime, request.id, payload, queue, request.hostname or None, redelivered=again
            )
            if parked is not None:
                return parked
            try:
                return score_payload(runtime, payload, attempts=deliveries, worker=request.hostname or None)
            except InvalidTask as e:
                park_invalid(runtime, request.id, payload, e, deliveries, queue)
                raise
            except HandBack as e:
                raise Reject(str(e), requeue=True) from e
        finally:  # not reached when the process dies: the count then survives to the next delivery
            if again:
                runtime.deliveries.settle(request.id)

    return score


def score_payload(
    runtime: WorkerRuntime, payload: Mapping[str, Any], *, attempts: int = 1, worker: str | None = None
) -> dict[str, Any]:
    """Score one task payload, write its audit rows in one transaction, return the ChunkResult dict.

    ``worker`` is the Celery node name recorded as the audit's worker_host (default: the host name).
    """
    prepared = prepare(runtime, payload)
    score_together(runtime, [prepared])
    return persist(runtime, prepared, attempts=attempts, worker=worker)
