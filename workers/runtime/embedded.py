"""The embedded default: one in-process Celery worker on the in-memory transport, in a thread.

Used when no broker is configured, so ``rewardq demo``, ``rewardq score`` and ``RewardClient()`` work on
a laptop with nothing running. The same task, rewards and audit writes as a real worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery import Celery
from celery.worker import WorkController
from celery.worker import state as worker_state

from rewardq.wire.schema import queue_for
from rewardq.wire.settings import Settings
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.runtime.app import create_app

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


class _ThreadWorker(WorkController):
    """A WorkController that reports when its consumer is ready (it runs in a thread)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def start(self) -> None:
        # The solo pool finds the task's app through the thread's current app; without this it is
        # Celery's default app, whose backend is disabled, and results would be dropped.
        self.app.set_current()
        super().start()

    def on_consumer_ready(self, consumer: Any) -> None:
        self.ready.set()


class EmbeddedWorker:
    """An in-process worker serving every configured reward; ``stop`` ends it."""

    def __init__(self, app: Celery, thread: threading.Thread) -> None:
        self.app = app
        self._thread = thread

    @classmethod
    def start(cls, settings: Settings) -> EmbeddedWorker:
        if not settings.embedded:
            raise ValueError("the embedded worker is for settings without a broker")
        from rewardq.storage import upgrade

        config = RewardsConfig.load(settings.rewards)
        upgrade(settings.database_url)
        app = create_app(settings, config)
        app.finalize()
        controller = _ThreadWorker(
            app=app,
            hostname=f"rewardq-embedded-{os.getpid()}@{socket.gethostname()}",
            pool_cls="solo",
            concurrency=1,
            queues=[queue_for(name) for name in config.names],
            loglevel=logging.WARNING,
            ready_callback=None,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        thread = threading.Thread(target=controller.start, name="rewardq-embedded-worker", daemon=True)
        thread.start()
        if not controller.ready.wait(START_TIMEOUT_S):
            raise RuntimeError(f"the embedded worker did not start within {START_TIMEOUT_S}s")
        log.info("embedded worker ready; audit store %s", settings.database_url)
        return cls(app, thread)

    def fingerprint(self, reward: str) -> str:
        """The scorer fingerprint this worker scores ``reward`` with (from its config; nothing loads)."""
        return str(self.app.rewardq_runtime.config.build(reward).fingerprint)

    def stop(self) -> None:
        worker_state.should_terminate = 0  # how Celery's own in-thread worker is stopped
        self._thread.join(STOP_TIMEOUT_S)
        worker_state.should_terminate = None
        if self._thread.is_alive():
            log.warning("embedded worker did not stop within %ss", STOP_TIMEOUT_S)
        self.app.rewardq_runtime.close()
        self.app.close()
