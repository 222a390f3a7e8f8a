"""The key-value port: its Redis and in-memory implementations behave the same (one test over both)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from rewardq.workers.process.kv import KeyValue, MemoryKV, RedisKV
from tests.conftest import RedisServer


@pytest.fixture(params=["redis", "memory"])
def kv(request: pytest.FixtureRequest) -> Iterator[KeyValue]:
    if request.param == "memory":
        store: KeyValue = MemoryKV()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisKV(redis.Redis.from_url(server.url))
    yield store
    store.close()


def test_both_implementations_answer_alike(kv: KeyValue) -> None:
    # values: bytes back, whether bytes or text went in; absent keys are None
    kv.set("a", b"1", ttl=60)
    kv.set("t", "text", ttl=60)
    assert kv.get("a") == b"1" and kv.get("t") == b"text" and kv.get("missing") is None
    assert kv.mget(["missing", "a", "t"]) == [None, b"1", b"text"] and kv.mget([]) == []

    # counters count from 0 and read back as their digits
    assert [kv.incr("n", ttl=60) for _ in range(3)] == [1, 2, 3]
    assert kv.get("n") == b"3"
    kv.delete("n", "a", "never-set")
    assert kv.get("n") is None and kv.get("a") is None
    assert kv.incr("n", ttl=60) == 1
    kv.delete()  # no keys: nothing happens

    # hashes
    assert kv.hgetall("h") == {} and kv.hget("h", "f") is None
    kv.hset("h", "f", "one")
    assert kv.hsetnx("h", "f", "two") is False and kv.hget("h", "f") == b"one"
    assert kv.hsetnx("h", "g", b"three") is True
    assert kv.hgetall("h") == {b"f": b"one", b"g": b"three"}
    assert kv.hdel("h", "f") is True and kv.hdel("h", "f") is False
    assert kv.hgetall("h") == {b"g": b"three"}
    kv.delete("h")
    assert kv.hgetall("h") == {}
