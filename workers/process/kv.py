"""The key-value port of a worker: the few Redis commands the result cache, the delivery counts and the
dead-letter queue use, with one Redis implementation and one in-process stand-in (embedded mode, tests).

Keys and values are those of Redis: values come back as bytes (a ``str`` written is stored UTF-8 encoded),
a counter reads back as its decimal digits. :func:`broker_kv` opens the broker's; nothing connects until
the first command.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

from rewardq.serving import redis_client
from rewardq.wire.settings import Settings


class KeyValue(Protocol):
    """What a worker asks of Redis."""

    def get(self, key: str) -> bytes | None: ...

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys``, in order (None where absent): one round trip on Redis."""
        ...

    def set(self, key: str, value: bytes | str, ttl: int) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (Redis keeps it at least one)."""
        ...

    def incr(self, key: str, ttl: int) -> int:
        """Add one to the counter under ``key`` (0 when absent) and let it expire ``ttl`` seconds from now."""
        ...

    def incr_get(self, key: str, ttl: int, read: str) -> tuple[int, bytes | None]:
        """``incr(key, ttl)`` and ``get(read)`` in one round trip on Redis."""
        ...

    def delete(self, *keys: str) -> None: ...

    def hset(self, key: str, field: str, value: bytes | str) -> None: ...

    def hsetnx(self, key: str, field: str, value: bytes | str) -> bool:
        """Set ``field`` only if it is not set; True when it was set."""
        ...

    def hget(self, key: str, field: str) -> bytes | None: ...

    def hgetall(self, key: str) -> dict[bytes, bytes]: ...

    def hdel(self, key: str, field: str) -> bool:
        """Remove ``field``; True when it was there."""
        ...

    def close(self) -> None: ...


class RedisKV:
    """The port on a redis-py client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, key: str) -> bytes | None:
        return _bytes(self.client.get(key))

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return [_bytes(v) for v in self.client.mget(list(keys))] if keys else []

    def set(self, key: str, value: bytes | str, ttl: int) -> None:
        self.client.set(key, value, ex=max(1, int(ttl)))

    def incr(self, key: str, ttl: int) -> int:
        count, _ = self.client.pipeline(transaction=False).incr(key).expire(key, ttl).execute()
        return int(count)

    def incr_get(self, key: str, ttl: int, read: str) -> tuple[int, bytes | None]:
        count, _, value = (
            self.client.pipeline(transaction=False).incr(key).expire(key, ttl).get(read).execute()
        )
        return int(count), _bytes(value)

    def delete(self, *keys: str) -> None:
        if keys:
            self.client.delete(*keys)

    def hset(self, key: str, field: str, value: bytes | str) -> None:
        self.client.hset(key, field, value)

    def hsetnx(self, key: str, field: str, value: bytes | str) -> bool:
        return bool(self.client.hsetnx(key, field, value))

    def hget(self, key: str, field: str) -> bytes | None:
        return _bytes(self.client.hget(key, field))

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        return dict(self.client.hgetall(key))

    def hdel(self, key: str, field: str) -> bool:
        return bool(self.client.hdel(key, field))

    def close(self) -> None:
        self.client.close()


class MemoryKV:
    """The port in process memory, thread-safe; beyond ``max_entries`` keys the least recently used goes."""

    def __init__(self, max_entries: int | None = None) -> None:
        self.max_entries = max_entries
        self._values: OrderedDict[str, Any] = OrderedDict()  # bytes, or a hash as dict[str, bytes]
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def _live(self, key: str) -> Any:
        if key in self._expiry and self._expiry[key] <= time.monotonic():
            self._drop(key)
        if key in self._values:
            self._values.move_to_end(key)
        return self._values.get(key)

    def _drop(self, key: str) -> None:
        self._values.pop(key, None)
        self._expiry.pop(key, None)

    def _store(self, key: str, value: Any, ttl: int | None) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        if ttl is None:
            self._expiry.pop(key, None)
        else:
            self._expiry[key] = time.monotonic() + ttl
        while self.max_entries is not None and len(self._values) > self.max_entries:
            self._drop(next(iter(self._values)))

    def _hash(self, key: str) -> dict[str, bytes]:
        fields = self._live(key)
        if fields is None:
            fields = {}
            self._store(key, fields, None)
        return fields

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._live(key)
            return value if isinstance(value, bytes) else None

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    def set(self, key: str, value: bytes | str, ttl: int) -> None:
        with self._lock:
            self._store(key, _encode(value), ttl)

    def incr(self, key: str, ttl: int) -> int:
        with self._lock:
            count = int(self._live(key) or 0) + 1
            self._store(key, str(count).encode(), ttl)
            return count

    def incr_get(self, key: str, ttl: int, read: str) -> tuple[int, bytes | None]:
        return self.incr(key, ttl), self.get(read)

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._drop(key)

    def hset(self, key: str, field: str, value: bytes | str) -> None:
        with self._lock:
            self._hash(key)[field] = _encode(value)

    def hsetnx(self, key: str, field: str, value: bytes | str) -> bool:
        with self._lock:
            fields = self._hash(key)
            if field in fields:
                return False
            fields[field] = _encode(value)
            return True

    def hget(self, key: str, field: str) -> bytes | None:
        with self._lock:
            return dict(self._live(key) or {}).get(field)

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        with self._lock:
            return {k.encode(): v for k, v in (self._live(key) or {}).items()}

    def hdel(self, key: str, field: str) -> bool:
        with self._lock:
            return (self._live(key) or {}).pop(field, None) is not None

    def close(self) -> None:
        with self._lock:
            self._values.clear()
            self._expiry.clear()


def broker_kv(settings: Settings) -> KeyValue:
    """The broker's Redis (with its TLS options), or process memory when embedded."""
    if settings.embedded or not settings.broker_url:
        return MemoryKV()
    return RedisKV(redis_client(settings))


def _bytes(value: Any) -> bytes | None:
    return value if isinstance(value, bytes) else None


def _encode(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
