"""The result cache that rewards share across tasks, workers and runs (a judge's verdicts).

With a broker configured it is Redis (``REWARDQ_CACHE_URL``, else the broker's URL when that is
Redis), so every worker shares it; in embedded mode it is an in-process LRU. Values are bytes with a
time to live. Callers never cache errors.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from rewardq.tls import redis_ssl_options, uses_tls
from rewardq.wire.keys import CACHE_PREFIX
from rewardq.wire.settings import Settings


class ResultCache(Protocol):
    """A key/value store with expiry."""

    def get(self, key: str) -> bytes | None: ...

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys``, in order (None where absent): one round trip on Redis."""
        ...

    def set(self, key: str, value: bytes, ttl: int) -> None: ...

    def close(self) -> None: ...


class MemoryCache:
    """An in-process LRU with expiry; thread-safe."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if expires < time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    def set(self, key: str, value: bytes, ttl: int) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()


class RedisCache:
    """Entries under ``rewardq:cache:<key>`` in a Redis shared by every worker."""

    def __init__(self, url: str, **options: Any) -> None:
        import redis

        self._client: Any = redis.Redis.from_url(url, **options)

    def get(self, key: str) -> bytes | None:
        value = self._client.get(CACHE_PREFIX + key)
        return value if isinstance(value, bytes) else None

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = self._client.mget([CACHE_PREFIX + key for key in keys])
        return [v if isinstance(v, bytes) else None for v in values]

    def set(self, key: str, value: bytes, ttl: int) -> None:
        self._client.set(CACHE_PREFIX + key, value, ex=max(1, int(ttl)))

    def close(self) -> None:
        self._client.close()


def open_cache(settings: Settings) -> ResultCache:
    """Redis when a Redis URL is configured for the cache or the broker, else in-process."""
    url = settings.cache_url or settings.broker_url
    if url and url.startswith(("redis://", "rediss://", "unix://")):
        return RedisCache(url, **(redis_ssl_options(settings) if uses_tls(url) else {}))
    return MemoryCache()
