"""Starting a worker process: pin the GPU before torch is imported, then consume the rewards' queues."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from celery import signals

from rewardq.connection import check_connection
from rewardq.wire.errors import ScorerMismatchError, SettingsError
from rewardq.wire.schema import queue_for
from rewardq.wire.settings import Settings
from rewardq.workers.process.resources import GPU_ENV

if TYPE_CHECKING:
    from rewardq.workers.rewards.config import RewardsConfig

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
    metrics_port: int | None = None  # serve Prometheus metrics here (None: off)


def pin_gpu(gpu: str) -> None:
    """Make only ``gpu`` visible to this process; must run before torch is imported."""
    if "torch" in sys.modules:
        raise RuntimeError(
            "torch was imported before the GPU was pinned; CUDA_VISIBLE_DEVICES would be ignored"
        )
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ[GPU_ENV] = gpu


def node_name(gpu: str | None) -> str:
    """The Celery node name, which the audit records as worker_host: ``rewardq-gpu0-<pid>@<host>``.

    Celery's CLI expands ``%h``; a Worker built in code does not, so it is expanded here.
    """
    from celery.utils.nodenames import host_format

    return host_format(f"rewardq-{'gpu' + gpu if gpu is not None else 'cpu'}-{os.getpid()}@%h")


def choose_pool(config: RewardsConfig, options: WorkerOptions) -> str:
    """The pool to run: as asked, else solo for a GPU or a reward that holds a model, else prefork.

    Refuses prefork where it would load one model copy per child process (a GPU, or a model kind).
    """
    pool = options.pool
    holders = [name for name in options.rewards if config.kinds.resolve(config.spec(name).kind).holds_model]
    if pool is None:
        return "solo" if options.gpu is not None or holders else "prefork"
    if pool not in POOLS:
        raise SettingsError(f"--pool must be one of {', '.join(POOLS)}, got {pool!r}")
    if pool == "prefork" and (options.gpu is not None or holders):
        why = (
            f"rewards {', '.join(holders)} hold a model"
            if holders
            else f"GPU {options.gpu} would be shared by one process per core"
        )
        raise SettingsError(
            f"--pool prefork would load one model copy per child process ({why}); use --pool solo, or "
            "--pool threads to run several tasks against one copy"
        )
    return pool


def solo_reason(config: RewardsConfig, options: WorkerOptions) -> str:
    """Why a worker runs the solo pool, for the line saying that its --concurrency is ignored."""
    if options.pool == "solo":
        return "--pool solo"
    holders = [name for name in options.rewards if config.kinds.resolve(config.spec(name).kind).holds_model]
    if holders:
        return f"reward {', '.join(holders)} {'holds' if len(holders) == 1 else 'hold'} a model"
    return f"--gpu {options.gpu}"


def run_worker(settings: Settings, options: WorkerOptions) -> int:
    """Run a Celery worker for ``options.rewards`` until it is stopped; returns its exit code."""
    if settings.embedded:
        raise SettingsError(
            "rewardq worker needs a broker: set REWARDQ_BROKER_URL (e.g. redis://localhost:6379/0)"
        )
    if options.gpu is not None:
        pin_gpu(options.gpu)

    from rewardq.storage import upgrade
    from rewardq.wire.announcement import Announcement
    from rewardq.workers.rewards.config import RewardsConfig
    from rewardq.workers.runtime.app import create_app
    from rewardq.workers.runtime.coalesce import prefetch_multiplier
    from rewardq.workers.runtime.heartbeat import Heartbeat

    config = RewardsConfig.load(settings.rewards)
    for name in options.rewards:
        config.spec(name)  # unknown names fail here, listing the known ones
    pool = choose_pool(config, options)
    concurrency = 1 if pool == "solo" else (options.concurrency or os.cpu_count() or 1)
    if pool == "solo" and (options.concurrency or 1) > 1:
        log.warning(
            "%s: using the solo pool, --concurrency %d ignored (use --pool threads for several tasks on "
            "one model copy)",
            solo_reason(config, options),
            options.concurrency,
        )
    upgrade(settings.database_url)
    if options.metrics_port is not None:  # before the pool forks, and before prometheus-client is imported
        from rewardq.workers.runtime.exposition import expose

        expose(options.metrics_port)
    app = create_app(settings, config)
    check_connection(app, refusals_only=True)  # a wrong password or certificate: fail now, not retry forever
    app.conf.worker_prefetch_multiplier = prefetch_multiplier(settings, config, options.rewards)
    runtime = app.rewardq_runtime
    # Every reward is built before the worker consumes: a missing model or an unreachable server
    # fails the start (RewardSetupError, exit 2), and the first task does not pay the load.
    runtime.prepare(options.rewards, tasks_at_once=concurrency if pool == "threads" else 1)
    fingerprints = {name: runtime.reward(name).fingerprint for name in options.rewards}
    if pool == "prefork":
        # Children build their own (a model or client must not cross a fork): at their start.
        runtime.close()

        def _prepare_child(**_: object) -> None:
            try:
                runtime.prepare(options.rewards)
            except Exception:  # built fine in the parent; a child's failure fails its tasks, not the pool
                log.exception("pool process %d could not set up its rewards", os.getpid())

        signals.worker_process_init.connect(_prepare_child, weak=False)

    def _close(**_: object) -> None:
        runtime.close()

    signals.worker_process_shutdown.connect(_close, weak=False)
    signals.worker_shutdown.connect(_close, weak=False)
    log.info("serving %s with pool=%s concurrency=%d gpu=%s", options.rewards, pool, concurrency, options.gpu)
    hostname = node_name(options.gpu)
    queues = [queue_for(name) for name in options.rewards]
    announcement = Announcement(
        node=hostname,
        rewards=options.rewards,
        queues=queues,
        gpu=options.gpu,
        pool=pool,
        concurrency=concurrency,
        fingerprints=fingerprints,
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=time.time(),
    )
    heartbeat = Heartbeat(settings, announcement)
    try:
        # A reward live workers serve with another scorer fingerprint: refused before consuming.
        heartbeat.claim()
    except ScorerMismatchError:
        runtime.close()
        raise
    heartbeat.install()
    worker = app.Worker(
        hostname=hostname,
        queues=queues,
        pool_cls=pool,
        concurrency=concurrency,
        loglevel=options.loglevel,
    )
    worker.start()
    return int(worker.exitcode or 0)
