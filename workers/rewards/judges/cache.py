"""Results of server requests kept for reuse: the key of a request and what is stored under it.

The key is a sha256 of everything that decides a result: the reward kind, the model, the request
body (rendered messages or input, sampling parameters, structured output) and how the reply is read
(parser, labels, score range). Only results that were read successfully are stored; errors never are.
The store is the worker's ``resources.cache`` (Redis shared by every worker when a broker is configured,
an in-process LRU in embedded mode).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from rewardq.workers.process.cache import ResultCache

log = logging.getLogger(__name__)


Value = float | tuple[float, ...]
"""What a reply is read into: one value in [0, 1] (``judge``, ``pairwise_judge``'s verdict), or one per
completion it was asked about (``group_judge``)."""


@dataclass(frozen=True)
class CachedResult:
    """What a successful request left: the value and what the audit shows of it."""

    value: Value
    raw: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    truncated: bool = False


def request_key(kind: str, model: str, body: dict[str, Any], reader: dict[str, Any]) -> str:
    """The cache key of a request: identical keys are sent once and share one result."""
    canonical = orjson.dumps(
        {"kind": kind, "model": model, "body": body, "reader": reader}, option=orjson.OPT_SORT_KEYS
    )
    return f"{kind}:{hashlib.sha256(canonical).hexdigest()}"


class RequestCache:
    """Cached results over a key/value store with a TTL; a store that fails is logged and skipped."""

    def __init__(self, store: ResultCache, ttl: int) -> None:
        self.store = store
        self.ttl = ttl

    def get_many(self, keys: Sequence[str]) -> list[CachedResult | None]:
        """The cached results of ``keys``, in order (None where absent); one round trip on Redis."""
        try:
            found = self.store.get_many(keys)
        except Exception as e:  # a cache outage costs requests, not scores
            log.warning("result cache read failed: %s: %s", type(e).__name__, e)
            return [None] * len(keys)
        return [None if data is None else _load(key, data) for key, data in zip(keys, found, strict=True)]

    def put(self, key: str, result: CachedResult) -> None:
        try:
            self.store.set(key, orjson.dumps(asdict(result)), self.ttl)
        except Exception as e:
            log.warning("result cache write failed: %s: %s", type(e).__name__, e)


def _load(key: str, data: bytes) -> CachedResult | None:
    try:
        fields = orjson.loads(data)
        if isinstance(fields.get("value"), list):  # JSON holds a group judge's tuple as a list
            fields["value"] = tuple(fields["value"])
        return CachedResult(**fields)
    except (orjson.JSONDecodeError, TypeError, AttributeError) as e:
        log.warning("ignoring an unreadable cache entry %s: %s", key, e)
        return None
