"""Request keys and the result cache of the server-backed kinds."""

from __future__ import annotations

from collections.abc import Sequence

from rewardq.workers.process.cache import ResultCache
from rewardq.workers.process.kv import MemoryKV
from rewardq.workers.rewards.judges.cache import CachedResult, RequestCache, request_key

BODY = {"model": "m", "messages": [{"role": "user", "content": "Grade: 4"}], "temperature": 0.0}


def test_a_key_covers_the_request_and_how_the_reply_is_read() -> None:
    key = request_key("judge", "m", BODY, {"parser": None})
    assert key == request_key("judge", "m", dict(reversed(BODY.items())), {"parser": None})
    assert key != request_key("judge", "m", {**BODY, "temperature": 0.5}, {"parser": None})
    assert key != request_key("judge", "m", BODY, {"parser": r"(\d)"})
    assert key != request_key("judge", "other", BODY, {"parser": None})
    assert key != request_key("remote_reward_model", "m", BODY, {"parser": None})


def test_results_round_trip_and_unreadable_entries_are_misses() -> None:
    store = ResultCache(MemoryKV())
    cache = RequestCache(store, ttl=60)
    result = CachedResult(0.7, "[[7]]", prompt_tokens=11, completion_tokens=3)
    cache.put("a", result)
    store.set("b", b"not json", ttl=60)
    assert cache.get_many(["a", "b", "c"]) == [result, None, None]


class BrokenStore:
    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        raise ConnectionError("redis is down")

    def set(self, key: str, value: bytes, ttl: int) -> None:
        raise ConnectionError("redis is down")


def test_a_cache_outage_costs_requests_not_scores() -> None:
    cache = RequestCache(BrokenStore(), ttl=60)
    cache.put("a", CachedResult(1.0, None))  # logged, not raised
    assert cache.get_many(["a", "b"]) == [None, None]
