"""What the score task runs with: the worker's settings and rewards config (the same in every process),
and this process's :class:`~rewardq.workers.process.resources.WorkerResources` (its rewards, their shared
resources, the audit engine and its sealer, the broker's key-value store for delivery counts and the
dead-letter queue).

The per-process part is built on first use in the process that uses it and kept with its process id: a
prefork child builds its own, never uses its parent's. ``close`` ends it; the next use builds a new one.
Each reward is built under a lock of its own: loading one model never blocks tasks of other rewards.
A reward is served by a :data:`Scorer` that answers every chunk by the reward's ``time_limit``: a CPU
kind in killable children (:mod:`.child`), a model or judge in this process under a watchdog
(:mod:`.watchdog`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeAlias

from rewardq.wire.errors import RewardqError, RewardSetupError
from rewardq.wire.settings import Settings
from rewardq.workers.process.resources import WorkerResources
from rewardq.workers.process.sealer import Sealer
from rewardq.workers.rewards.base import Reward
from rewardq.workers.rewards.config import RewardsConfig
from rewardq.workers.runtime.child import ChildPool, ChildScorer
from rewardq.workers.runtime.deliveries import Deliveries
from rewardq.workers.runtime.dlq import DeadLetters
from rewardq.workers.runtime.watchdog import WatchedScorer

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

Scorer: TypeAlias = ChildScorer | WatchedScorer


class WorkerRuntime:
    """The score task's view of its worker: config for every process, resources for this one."""

    def __init__(self, settings: Settings, config: RewardsConfig) -> None:
        self.settings = settings
        self.config = config
        self.host = socket.gethostname()
        self._process: WorkerResources | None = None
        self._opening = threading.Lock()  # two threads' first use builds one context
        self._serving: list[str] = []  # the rewards this worker was started for (none: embedded)
        self._tasks_at_once = 1  # tasks this process runs at once (a threads pool's concurrency)

    @property
    def process(self) -> WorkerResources:
        """This process's resources, built here on first use (after a fork, the child's own)."""
        current = self._process
        if current is None or current.pid != os.getpid():
            with self._opening:
                current = self._process
                if current is None or current.pid != os.getpid():
                    current = self._process = WorkerResources(self.settings)
        return current

    @property
    def gpu(self) -> str | None:
        return self.process.gpu

    @property
    def engine(self) -> Engine:
        return self.process.engine

    @property
    def sealer(self) -> Sealer:
        """This process's audit sealer (a thread, started on first use)."""
        process = self.process
        return process.shared(Sealer, lambda: Sealer(process.engine, self.settings.chain_key))

    @property
    def deliveries(self) -> Deliveries:
        process = self.process
        return process.shared(Deliveries, lambda: Deliveries(self.settings, process.broker))

    @property
    def dead_letters(self) -> DeadLetters:
        process = self.process
        return process.shared(DeadLetters, lambda: DeadLetters(process.broker))

    def reward(self, name: str) -> Scorer:
        """The scorer of the reward called ``name``, built and set up on first use in this process.

        Raises RewardSetupError (naming the reward) when it cannot be set up, or the config's error
        for an unknown name.
        """
        process = self.process
        return process.shared((Reward, name), lambda: self._build(name, process))

    def _build(self, name: str, resources: WorkerResources) -> Scorer:
        log.info("building reward %s (pid %d)", name, os.getpid())
        reward = self.config.build(name)
        try:
            reward.fingerprint  # noqa: B018 - computed now, not on the first task
            if reward.runs_in == "child":
                return ChildScorer(reward, resources.shared(ChildPool, lambda: self._children()))
            reward.setup(resources)
            return WatchedScorer(reward, embedded=self.settings.embedded)
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

    def _children(self) -> ChildPool:
        """The process's children for CPU rewards, which build those this worker serves when they start."""
        kinds = self.config.kinds
        serving = [n for n in self._serving if kinds.resolve(self.config.spec(n).kind).runs_in == "child"]
        return ChildPool(self.config.path, serving, self.settings, self._tasks_at_once)

    def prepare(self, names: Iterable[str], tasks_at_once: int = 1) -> None:
        """Build and set up every reward in ``names`` now (at worker start, before consuming), for a
        process that runs ``tasks_at_once`` tasks at a time (its CPU rewards get a child for each)."""
        self._serving = list(names)
        self._tasks_at_once = tasks_at_once
        for name in self._serving:
            self.reward(name)

    def close(self) -> None:
        """Close this process's resources (rewards first); a forked child leaves its parent's alone."""
        current, self._process = self._process, None
        if current is not None and current.pid == os.getpid():
            current.close()
