"""The result cache that rewards share across tasks, workers and runs (a judge's verdicts).

With a broker configured it is Redis (``REWARDQ_CACHE_URL``, else the broker's URL when that is
Redis), so every worker shares it; in embedded mode it is an in-process LRU. Values are bytes with a
time to live, under ``rewardq:cache:<key>``. Callers never cache errors.
"""

from __future__ import annotations

from collections.abc import Sequence

from rewardq.serving import REDIS_SCHEMES, redis_client
from rewardq.wire.keys import CACHE_PREFIX
from rewardq.wire.settings import Settings
from rewardq.workers.process.kv import KeyValue, MemoryKV, RedisKV

MEMORY_ENTRIES = 100_000  # the in-process cache's bound (least recently used first out)


class ResultCache:
    """Entries under ``rewardq:cache:<key>`` of a key-value store."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    def get(self, key: str) -> bytes | None:
        return self.kv.get(CACHE_PREFIX + key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys``, in order (None where absent): one round trip on Redis."""
        return self.kv.mget([CACHE_PREFIX + key for key in keys])

    def set(self, key: str, value: bytes, ttl: int) -> None:
        self.kv.set(CACHE_PREFIX + key, value, ttl)

    def close(self) -> None:
        self.kv.close()


def open_cache(settings: Settings) -> ResultCache:
    """Redis when a Redis URL is configured for the cache or the broker, else in-process."""
    url = settings.cache_url or settings.broker_url
    if url and url.startswith(REDIS_SCHEMES):
        return ResultCache(RedisKV(redis_client(settings, url)))
    return ResultCache(MemoryKV(max_entries=MEMORY_ENTRIES))
