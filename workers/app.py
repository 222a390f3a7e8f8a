"""The worker's Celery app factory: shared broker settings plus what long scoring tasks need."""

from __future__ import annotations

from celery import Celery

from rewardq.broker import make_app
from rewardq.settings import Settings
from rewardq.workers.coalesce import register_coalescing
from rewardq.workers.config import RewardsConfig
from rewardq.workers.consumer import RecordingConsumer
from rewardq.workers.runtime import WorkerRuntime
from rewardq.workers.task import register_score_task


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
        worker_consumer=RecordingConsumer,  # refused messages go to the dead-letter queue
    )
    runtime = WorkerRuntime(settings, config)
    register_coalescing(app, runtime, register_score_task(app, runtime))
    app.rewardq_runtime = runtime
    return app
