"""Resources a worker process holds: its rewards (built once, in the process that uses them) and the
audit engine. Built lazily per process id, so a prefork child never inherits its parent's."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import TYPE_CHECKING

from rewardq.settings import Settings
from rewardq.workers.config import RewardsConfig
from rewardq.workers.rewards.base import Reward

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

GPU_ENV = "REWARDQ_GPU"


class WorkerRuntime:
    """Per-process rewards and audit engine for the score task."""

    def __init__(self, settings: Settings, config: RewardsConfig) -> None:
        self.settings = settings
        self.config = config
        self.host = socket.gethostname()
        self.gpu = os.environ.get(GPU_ENV)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._rewards: dict[str, Reward] = {}
        self._engine: Engine | None = None

    def _check_pid(self) -> None:
        if self._pid != os.getpid():  # forked: the parent's resources are not ours to use or close
            self._pid = os.getpid()
            self._rewards = {}
            self._engine = None

    def reward(self, name: str) -> Reward:
        """The reward called ``name``, built on first use in this process."""
        with self._lock:
            self._check_pid()
            reward = self._rewards.get(name)
            if reward is None:
                log.info("building reward %s (pid %d)", name, self._pid)
                reward = self._rewards[name] = self.config.build(name)
            return reward

    @property
    def engine(self) -> Engine:
        with self._lock:
            self._check_pid()
            if self._engine is None:
                from rewardq.storage import make_engine

                # No pre-ping round trip per task: a connection that died is invalidated by the
                # failed write, and the task's retry opens a fresh one.
                self._engine = make_engine(self.settings.database_url, pool_pre_ping=False)
            return self._engine

    def close(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                return
            for reward in self._rewards.values():
                try:
                    reward.close()
                except Exception:
                    log.exception("closing reward %s failed", reward.name)
            self._rewards = {}
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
