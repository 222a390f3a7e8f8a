"""Resources a worker process holds: its rewards (built and set up once, in the process that uses them),
their shared resources, the audit engine, and the broker's Redis for delivery counts and the
dead-letter queue. Kept per process id, so a prefork child never uses its
parent's.

Each reward is built under a lock of its own: loading one model never blocks tasks of other rewards.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rewardq.wire.errors import RewardqError, RewardSetupError
from rewardq.wire.settings import Settings
from rewardq.workers.process.resources import GPU_ENV, WorkerResources
from rewardq.workers.rewards.base import Reward
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.runtime.deliveries import Deliveries, broker_redis
from rewardq.workers.runtime.dlq import DeadLetters

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)


class _ProcessState:
    """What one process has built: rewards, their resources, the audit engine."""

    def __init__(self, settings: Settings) -> None:
        self.pid = os.getpid()
        self.resources = WorkerResources(settings)
        self.rewards: dict[str, Reward] = {}
        self.engine: Engine | None = None
        self.guard = threading.Lock()
        self.build_locks: dict[str, threading.Lock] = {}

    def build_lock(self, name: str) -> threading.Lock:
        with self.guard:
            return self.build_locks.setdefault(name, threading.Lock())


class WorkerRuntime:
    """Per-process rewards and audit engine for the score task."""

    def __init__(self, settings: Settings, config: RewardsConfig) -> None:
        self.settings = settings
        self.config = config
        self.host = socket.gethostname()
        self.gpu = os.environ.get(GPU_ENV)
        client = broker_redis(settings)  # connects on first use, in the process that uses it
        self.deliveries = Deliveries(settings, client)
        self.dead_letters = DeadLetters(client)
        self._state = _ProcessState(settings)

    def _local(self) -> _ProcessState:
        state = self._state
        if state.pid != os.getpid():  # forked: the parent's resources are not ours to use or close
            state = self._state = _ProcessState(self.settings)
        return state

    def reward(self, name: str) -> Reward:
        """The reward called ``name``, built and set up on first use in this process.

        Raises RewardSetupError (naming the reward) when it cannot be set up, or the config's error
        for an unknown name.
        """
        state = self._local()
        reward = state.rewards.get(name)
        if reward is not None:
            return reward
        with state.build_lock(name):
            reward = state.rewards.get(name)
            if reward is None:
                reward = self._build(name, state.resources)
                state.rewards[name] = reward
        return reward

    def _build(self, name: str, resources: WorkerResources) -> Reward:
        log.info("building reward %s (pid %d)", name, os.getpid())
        reward = self.config.build(name)
        try:
            reward.setup(resources)
            reward.fingerprint  # noqa: B018 - computed now, not on the first task
        except RewardSetupError as e:
            reward.close()
            message = str(e)
            raise RewardSetupError(message if repr(name) in message else f"reward {name!r}: {message}") from e
        except RewardqError:
            reward.close()
            raise
        except Exception as e:
            reward.close()
            raise RewardSetupError(
                f"reward {name!r} (kind {reward.kind}) failed to set up: {type(e).__name__}: {e}"
            ) from e
        return reward

    def prepare(self, names: Iterable[str]) -> None:
        """Build and set up every reward in ``names`` now (at worker start, before consuming)."""
        for name in names:
            self.reward(name)

    @property
    def engine(self) -> Engine:
        state = self._local()
        with state.guard:
            if state.engine is None:
                from rewardq.storage import make_engine

                # No pre-ping round trip per task: a connection that died is invalidated by the
                # failed write, and the task's retry opens a fresh one.
                state.engine = make_engine(self.settings.database_url, pool_pre_ping=False)
            return state.engine

    def close(self) -> None:
        state = self._state
        if state.pid != os.getpid():
            return
        with state.guard:
            rewards, state.rewards = list(state.rewards.values()), {}
            engine, state.engine = state.engine, None
        for reward in rewards:
            try:
                reward.close()
            except Exception:
                log.exception("closing reward %s failed", reward.name)
        state.resources.close()
        if engine is not None:
            engine.dispose()
