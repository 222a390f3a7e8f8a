"""What a worker process shares between its rewards: models, clients and a result cache.

One :class:`WorkerResources` per process, handed to each reward's ``setup``. ``shared(key, factory)``
builds an object once per process under a lock of its own key, so that two rewards naming the same
model share one copy, and loading one model never blocks building another.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from rewardq.wire.settings import Settings

if TYPE_CHECKING:
    from rewardq.workers.process.cache import ResultCache

log = logging.getLogger(__name__)

GPU_ENV = "REWARDQ_GPU"
T = TypeVar("T")


class WorkerResources:
    """Objects held once per worker process; built on first request, closed with the process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gpu = os.environ.get(GPU_ENV)
        self._objects: dict[Hashable, Any] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()
        self._cache: ResultCache | None = None
        self._device: str | None = None

    def shared(self, key: Hashable, factory: Callable[[], T]) -> T:
        """The object under ``key``, built by ``factory`` on first request (once, even when racing)."""
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
        with self._guard:
            if self._cache is None:
                from rewardq.workers.process.cache import open_cache

                self._cache = open_cache(self.settings)
            return self._cache

    def close(self) -> None:
        """Close what was built (objects with a ``close`` method, the cache); the process is ending."""
        with self._guard:
            objects, self._objects = list(self._objects.values()), {}
            cache, self._cache = self._cache, None
        for obj in [*objects, cache]:
            close = getattr(obj, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.exception("closing %r failed", obj)
