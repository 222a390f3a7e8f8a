"""Cross-task coalescing: small tasks of model rewards, waiting on a worker, scored in shared passes.

Many small tasks reach a model worker at once (several trainers, verl's per-sample calls). Scored one
by one, each pays its own forward passes at a fraction of the token budget. Here the ``rewardq.score``
task's consumer strategy sends each message of a reward that holds a model (``Reward.holds_model``)
to a celery-batches buffer instead of running it; the buffer is flushed when ``coalesce_tasks``
messages are waiting or ``coalesce_wait_ms`` has passed since the first, and the flush scores the
buffered tasks of each reward in one call to the reward (one packing of its token budget). Messages
of every other reward take Celery's default strategy: the ordinary task, untouched.

Each task is still validated and answered on its own, from its own audit rows; the rows of a reward's
tasks in one flush are written in one transaction (``persist_together``; a task with a bad row fails
alone). Each result is stored with ``backend.mark_as_done`` under its own id, and celery-batches
acknowledges the messages (acks_late) only after the flush returns, so after every audit row is written. Each
request is a delivery of its task, counted and parked as the plain task's
(rewardq.workers.runtime.admission.admit); an audit-store outage retries the write, inside
``persist``, never the reward. The tasks of a reward stuck in this worker are handed back: sent again
to their queue, under their own ids, for another worker (:mod:`~rewardq.workers.runtime.watchdog`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery, Task
from celery.worker.strategy import default as default_strategy

from rewardq.wire.schema import TASK_NAME
from rewardq.wire.settings import Settings
from rewardq.workers.process import metrics
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.runtime.admission import admit, park_invalid, redelivered
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.persist import ScoredTask, persist_together
from rewardq.workers.runtime.scoring import score_together
from rewardq.workers.runtime.validate import InvalidTask, Prepared, prepare
from rewardq.workers.runtime.watchdog import HandBack

log = logging.getLogger(__name__)

COALESCED_TASK = "rewardq.score_coalesced"


def coalesces(config: RewardsConfig, reward: str) -> bool:
    """Whether tasks of ``reward`` are coalesced: it is configured and its kind holds a model."""
    spec = config.specs.get(reward)
    return spec is not None and bool(getattr(config.kinds.resolve(spec.kind), "holds_model", False))


def prefetch_multiplier(settings: Settings, config: RewardsConfig, rewards: Sequence[str]) -> int:
    """Tasks a worker reserves: enough to fill a flush when it serves a coalesced reward."""
    if any(coalesces(config, name) for name in rewards):
        return max(settings.prefetch_multiplier, settings.coalesce_tasks)
    return settings.prefetch_multiplier


def register_coalescing(app: Celery, runtime: WorkerRuntime, score_task: Task) -> Task:
    """Route ``score_task``'s messages of coalesced rewards to a celery-batches task; returns that task."""
    from celery_batches import Batches

    settings = runtime.settings

    @app.task(
        name=COALESCED_TASK,
        base=Batches,
        flush_every=settings.coalesce_tasks,
        flush_interval=settings.coalesce_wait_ms / 1000.0,
        acks_late=True,
    )
    def score_coalesced(requests: list[Any]) -> None:
        score_requests(app, runtime, requests)

    decided: dict[str, bool] = {}

    def is_coalesced(message: Any) -> bool:
        reward = _reward_of(message)
        if reward is None:
            return False
        if reward not in decided:
            decided[reward] = coalesces(runtime.config, reward)
        return decided[reward]

    def strategy(task: Task, app: Celery, consumer: Any, **kwargs: Any) -> Callable[..., None]:
        plain = default_strategy(task, app, consumer, **kwargs)
        batched = score_coalesced.start_strategy(app, consumer)

        def handle(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any) -> None:
            route = batched if is_coalesced(message) else plain
            route(message, body, ack, reject, callbacks, **kw)

        return handle

    score_task.Strategy = strategy
    return score_coalesced


def score_requests(app: Celery, runtime: WorkerRuntime, requests: Sequence[Any]) -> None:
    """Score buffered requests: one call and one audit transaction for each reward's tasks, then each
    task answered alone."""
    try:
        _score_requests(app, runtime, requests)
    finally:  # not reached when the process dies: the counts then survive to the next delivery
        if again := [request.id for request in requests if redelivered(request.delivery_info)]:
            runtime.deliveries.settle(*again)


def _score_requests(app: Celery, runtime: WorkerRuntime, requests: Sequence[Any]) -> None:
    backend = app.backend
    by_reward: dict[str, list[tuple[Any, Prepared, int]]] = defaultdict(list)
    for request in requests:
        payload = _payload(request)
        queue = (request.delivery_info or {}).get("routing_key")
        try:
            deliveries, payload, parked = admit(
                runtime,
                request.id,
                payload,
                queue,
                request.hostname or None,
                redelivered=redelivered(request.delivery_info),
            )
        except Exception as e:  # its stored samples could not be read: the broker stayed away
            log.error("task %s: %s", request.id, e)
            _fail(backend, request, e)
            continue
        if parked is not None:
            backend.mark_as_done(request.id, parked, request=request)
            continue
        try:
            item = prepare(runtime, payload)
        except InvalidTask as e:
            park_invalid(runtime, request.id, payload, e, deliveries, queue)
            _fail(backend, request, e)
            continue
        by_reward[item.task.reward].append((request, item, deliveries))
    for reward, group in by_reward.items():
        try:
            score_together(runtime, [item for _, item, _ in group])
        except HandBack as e:
            log.warning("%s: %d tasks handed back", e, len(group))
            for request, _, _ in group:
                _hand_back(app, request)
            continue
        metrics.coalesced(reward, len(group))
        log.info(
            "coalesced %d tasks of reward %s: %d samples in one call",
            len(group),
            reward,
            sum(len(item.scores) for _, item, _ in group),
        )
        results = persist_together(
            runtime,
            [ScoredTask(item, deliveries, request.hostname or None) for request, item, deliveries in group],
        )
        for (request, _, _), result in zip(group, results, strict=True):
            if isinstance(result, Exception):
                log.error("task %s of reward %s failed", request.id, reward, exc_info=result)
                _fail(backend, request, result)
            else:
                backend.mark_as_done(request.id, result, request=request)


def _fail(backend: Any, request: Any, error: Exception) -> None:
    """Store a task's failure (rewardq sends no errbacks, which celery-batches' requests cannot carry)."""
    backend.mark_as_failure(request.id, error, request=request, call_errbacks=False)


def _hand_back(app: Celery, request: Any) -> None:
    """Send a task again to its queue under its own id (its message is acknowledged with the flush)."""
    queue = (request.delivery_info or {}).get("routing_key")
    app.send_task(TASK_NAME, args=request.args, kwargs=request.kwargs, task_id=request.id, queue=queue)


def _payload(request: Any) -> Any:
    return request.args[0] if request.args else request.kwargs.get("payload")


def _reward_of(message: Any) -> str | None:
    """The reward named in a ``rewardq.score`` message, or None if it names none."""
    try:
        args = message.payload[0]
        reward = args[0].get("reward")
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None
    return reward if isinstance(reward, str) else None
