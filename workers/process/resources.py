"""The per-process context of a worker: everything one process builds for itself and closes at its end.

One :class:`WorkerResources` per process, built in the process that uses it (a prefork child builds its
own after the fork, never uses its parent's) and closed when the process shuts down. Each reward's
``setup`` gets it: ``shared(key, factory)`` builds an object once per process under a lock of its own
key, so that two rewards naming the same model share one copy, and loading one model never blocks building
another. The worker keeps its rewards there too, and the process's audit engine, result cache and broker
key-value store (delivery counts, the dead-letter queue).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from rewardq.wire.settings import Settings
from rewardq.workers.process.cache import ResultCache, open_cache
from rewardq.workers.process.kv import KeyValue, broker_kv

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

GPU_ENV = "REWARDQ_GPU"
CACHE_KEY = "rewardq.workers.process.cache"
BROKER_KEY = "rewardq.workers.process.kv"
T = TypeVar("T")


class WorkerResources:
    """What one worker process holds; each part built on first request, all closed with the process."""

    def __init__(self, settings: Settings) -> None:
        self.pid = os.getpid()
        self.settings = settings
        self.gpu = os.environ.get(GPU_ENV)
        self._objects: dict[Hashable, Any] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()
        self._engine: Engine | None = None
        self._device: str | None = None

    def shared(self, key: Hashable, factory: Callable[[], T]) -> T:
        """The object under ``key``, built by ``factory`` on first request (once, even when racing).

        A factory that raises leaves nothing behind: the next request builds again."""
        try:
            return self._objects[key]
        except KeyError:
            pass
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._objects:
                self._objects[key] = factory()
            return self._objects[key]

    @property
    def device(self) -> str:
        """``cuda`` when torch sees a GPU (the pinned one), else ``cpu``. Imports torch."""
        if self._device is None:
            import torch

            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    @property
    def cache(self) -> ResultCache:
        """The result cache: Redis (REWARDQ_CACHE_URL, else the broker's Redis) or in-process."""
        return self.shared(CACHE_KEY, lambda: open_cache(self.settings))

    @property
    def broker(self) -> KeyValue:
        """The broker's key-value store (delivery counts, the dead-letter queue); in-process when embedded."""
        return self.shared(BROKER_KEY, lambda: broker_kv(self.settings))

    @property
    def engine(self) -> Engine:
        """The audit store's engine."""
        with self._guard:
            if self._engine is None:
                from rewardq.storage import make_engine

                # No pre-ping round trip per task: a connection that died is invalidated by the
                # failed write, and the task's retry opens a fresh one.
                self._engine = make_engine(self.settings.database_url, pool_pre_ping=False)
            return self._engine

    def close(self) -> None:
        """Close what was built, the last built first (a reward before the models and loop it set up on),
        then the audit engine; the process is ending."""
        with self._guard:
            objects, self._objects = list(self._objects.values()), {}
            engine, self._engine = self._engine, None
        for obj in reversed(objects):
            close = getattr(obj, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.exception("closing %r failed", obj)
        if engine is not None:
            engine.dispose()
