"""The worker's Celery app factory: shared broker settings plus what long scoring tasks need."""

from __future__ import annotations

from celery import Celery

from rewardq.broker import make_app
from rewardq.wire.settings import Settings
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.runtime.coalesce import register_coalescing
from rewardq.workers.runtime.consumer import RecordingConsumer
from rewardq.workers.runtime.context import WorkerRuntime
from rewardq.workers.runtime.task import register_score_task
from rewardq.workers.runtime.transport import worker_transport

# A result that cannot be stored while Redis restarts is retried, not failed: a task that scored and
# audited its chunk must not answer "error" for it. Celery sleeps a random time up to the cap between
# tries (full jitter), so 200 tries with a 5 s cap ride out about eight minutes of outage.
RESULT_STORE_RETRIES = 200
RESULT_STORE_RETRY_CAP_MS = 5000


def create_app(settings: Settings, config: RewardsConfig | None = None) -> Celery:
    """A Celery app with the ``rewardq.score`` task; its runtime is at ``app.rewardq_runtime``."""
    config = config if config is not None else RewardsConfig.load(settings.rewards)
    app = make_app(settings, name="rewardq.workers")
    app.conf.update(
        task_acks_late=True,  # a task is acknowledged after it is scored and audited …
        task_reject_on_worker_lost=True,  # … and requeued if its worker dies mid-way
        worker_prefetch_multiplier=settings.prefetch_multiplier,
        task_time_limit=settings.task_time_limit,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        # Broker restarts: reconnect forever …
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        # … and store each result once Redis is back.
        result_backend_always_retry=True,
        result_backend_max_retries=RESULT_STORE_RETRIES,
        result_backend_base_sleep_between_retries_ms=100,
        result_backend_max_sleep_between_retries_ms=RESULT_STORE_RETRY_CAP_MS,
        worker_consumer=RecordingConsumer,  # refused messages go to the dead-letter queue
    )
    if (transport := worker_transport(settings.broker_url or "")) is not None:
        # … through the transport that turns kombu's crash on a closed connection into a connection
        # error (rewardq.workers.runtime.transport). The embedded worker's in-memory broker keeps its own.
        app.conf.broker_transport = transport
    runtime = WorkerRuntime(settings, config)
    register_coalescing(app, runtime, register_score_task(app, runtime))
    app.rewardq_runtime = runtime
    return app
