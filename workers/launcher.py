"""Starting a worker process: pin the GPU before torch is imported, then consume the rewards' queues."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

from celery import signals

from rewardq.errors import SettingsError
from rewardq.schema import queue_for
from rewardq.settings import Settings
from rewardq.workers.runtime import GPU_ENV

log = logging.getLogger(__name__)

POOLS = ("prefork", "solo", "threads")


@dataclass(frozen=True)
class WorkerOptions:
    """What ``rewardq worker`` was asked for."""

    rewards: list[str]
    gpu: str | None = None
    concurrency: int | None = None
    pool: str | None = None
    loglevel: str = "INFO"


def pin_gpu(gpu: str) -> None:
    """Make only ``gpu`` visible to this process; must run before torch is imported."""
    if "torch" in sys.modules:
        raise RuntimeError(
            "torch was imported before the GPU was pinned; CUDA_VISIBLE_DEVICES would be ignored"
        )
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ[GPU_ENV] = gpu


def run_worker(settings: Settings, options: WorkerOptions) -> int:
    """Run a Celery worker for ``options.rewards`` until it is stopped; returns its exit code."""
    if settings.embedded:
        raise SettingsError(
            "rewardq worker needs a broker: set REWARDQ_BROKER_URL (e.g. redis://localhost:6379/0)"
        )
    if options.gpu is not None:
        pin_gpu(options.gpu)
    pool = options.pool or ("solo" if options.gpu is not None else "prefork")
    if pool not in POOLS:
        raise SettingsError(f"--pool must be one of {', '.join(POOLS)}, got {pool!r}")
    concurrency = 1 if pool == "solo" else (options.concurrency or os.cpu_count() or 1)

    from rewardq.storage import upgrade
    from rewardq.workers.app import create_app
    from rewardq.workers.coalesce import prefetch_multiplier
    from rewardq.workers.config import RewardsConfig

    config = RewardsConfig.load(settings.rewards)
    for name in options.rewards:
        config.spec(name)  # unknown names fail here, listing the known ones
    upgrade(settings.database_url)
    app = create_app(settings, config)
    app.conf.worker_prefetch_multiplier = prefetch_multiplier(settings, config, options.rewards)
    runtime = app.rewardq_runtime

    def _close(**_: object) -> None:
        runtime.close()

    signals.worker_process_shutdown.connect(_close, weak=False)
    signals.worker_shutdown.connect(_close, weak=False)
    log.info("serving %s with pool=%s concurrency=%d gpu=%s", options.rewards, pool, concurrency, options.gpu)
    worker = app.Worker(
        hostname=f"rewardq-{'gpu' + options.gpu if options.gpu is not None else 'cpu'}-{os.getpid()}@%h",
        queues=[queue_for(name) for name in options.rewards],
        pool_cls=pool,
        concurrency=concurrency,
        loglevel=options.loglevel,
    )
    worker.start()
    return int(worker.exitcode or 0)
