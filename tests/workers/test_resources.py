"""Per-process shared resources and the result cache (in-process and on the real Redis)."""

from __future__ import annotations

import threading
import time

from rewardq import Settings
from rewardq.workers.process.cache import ResultCache, open_cache
from rewardq.workers.process.kv import MemoryKV, RedisKV
from rewardq.workers.process.resources import WorkerResources
from tests.conftest import RedisServer


def test_shared_builds_once_per_key_even_when_racing_and_keys_do_not_block_each_other() -> None:
    resources = WorkerResources(Settings.from_env({}))
    calls: list[str] = []
    slow_started = threading.Event()

    def slow() -> str:
        slow_started.set()
        time.sleep(0.3)
        calls.append("slow")
        return "slow"

    threads = [threading.Thread(target=resources.shared, args=("a", slow)) for _ in range(4)]
    for t in threads:
        t.start()
    slow_started.wait(5)
    # another key is built while "a" is still loading
    assert resources.shared("b", lambda: "fast") == "fast"
    assert calls == []
    for t in threads:
        t.join()
    assert calls == ["slow"] and resources.shared("a", slow) == "slow"


def test_close_closes_what_was_built() -> None:
    resources = WorkerResources(Settings.from_env({}))
    closed: list[bool] = []

    class Client:
        def close(self) -> None:
            closed.append(True)

    resources.shared("client", Client)
    resources.close()
    assert closed == [True]


def test_memory_cache_expires_and_evicts_least_recent() -> None:
    cache = ResultCache(MemoryKV(max_entries=2))
    cache.set("a", b"1", ttl=60)
    cache.set("b", b"2", ttl=60)
    assert cache.get("a") == b"1"
    cache.set("c", b"3", ttl=60)  # evicts b, the least recently used
    assert cache.get_many(["c", "b"]) == [b"3", None]
    assert cache.get("b") is None and cache.get("a") == b"1"
    cache.set("d", b"4", ttl=0)
    assert cache.get("d") is None


def test_the_cache_is_redis_when_a_redis_broker_is_configured(redis_server: RedisServer) -> None:
    assert isinstance(open_cache(Settings.from_env({})).kv, MemoryKV)
    cache = open_cache(Settings.from_env({}, broker_url=redis_server.url))
    assert isinstance(cache.kv, RedisKV)
    cache.set("k", b"v", ttl=30)
    other = open_cache(Settings.from_env({}, broker_url="redis://unused:1/0", cache_url=redis_server.url))
    assert other.get("k") == b"v" and other.get("missing") is None
    assert other.get_many(["missing", "k"]) == [None, b"v"] and other.get_many([]) == []
    cache.close()
    other.close()
