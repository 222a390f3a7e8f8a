"""Samples stored once in the broker's Redis, for the tasks of every reward of their chunk.

On a Redis broker, ``RewardClient.submit`` encodes each chunk's samples once (orjson) and stores them
under :func:`rewardq.wire.keys.samples_key` before it sends the chunk's tasks, which carry only their
count (:data:`rewardq.wire.schema.STORED`): the samples cross Redis once whatever the number of rewards,
travel as plain JSON (not base64 inside a JSON message), and kombu's ``unacked`` copy of each message in
flight is a few hundred bytes. A worker reads them back before it validates the task. A chunk for one
reward of at most :data:`INLINE_MAX_BYTES` travels inline, as on the embedded broker: for a small task
the extra round trips (storing, deleting) cost more than the copies they save.

Lifetime: a chunk's samples expire with the results (``REWARDQ_RESULT_EXPIRES``), and the handle that
submitted the batch deletes them once every reward of the chunk has answered. A redelivered task finds
them still there; a chunk re-sent after a broker restart lost it stores them again first
(:mod:`rewardq.resend`); a task parked in the dead-letter queue keeps its samples inline, so that a
replay does not depend on them. A task whose samples are gone (expired before a worker took it) is
refused and parked, and its samples are answered ``error`` with that reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from redis.backoff import ConstantBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from rewardq.broker import PUBLISH_RETRY_POLICY
from rewardq.connection import masked
from rewardq.serving import REDIS_SCHEMES, redis_client
from rewardq.wire.errors import BrokerLost
from rewardq.wire.keys import samples_key
from rewardq.wire.settings import Settings


def stores_samples(settings: Settings) -> bool:
    """True when tasks reference stored samples: a Redis broker (the embedded one keeps them inline)."""
    return bool(settings.broker_url) and str(settings.broker_url).startswith(REDIS_SCHEMES)


INLINE_MAX_BYTES = 32 * 1024
"""A chunk of one reward up to this size as JSON travels inline in its task: storing it would cost more
round trips than the copies it saves."""


def worth_storing(size: int, rewards: int) -> bool:
    """Whether a chunk of ``size`` bytes of JSON, for ``rewards`` rewards, is stored rather than inline."""
    return rewards > 1 or size > INLINE_MAX_BYTES


def encode(samples: Sequence[Any]) -> bytes:
    """A chunk's samples (in their wire form) as JSON: orjson, or the standard encoder for what orjson
    cannot encode (an integer beyond 64 bits in a column)."""
    try:
        return orjson.dumps(samples)
    except TypeError:
        return json.dumps(samples).encode()


class SampleStore:
    """Stores and drops chunks' samples in the broker's Redis; connects on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ttl = max(1, int(settings.result_expires))
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:  # a broker restart is retried as long as a publish is (one try a second)
            retry = Retry(ConstantBackoff(1.0), int(PUBLISH_RETRY_POLICY["max_retries"]))
            self._client = redis_client(
                self.settings, retry=retry, retry_on_error=[RedisConnectionError, RedisTimeoutError]
            )
        return self._client

    def put(self, batch_id: str, chunks: Mapping[int, bytes]) -> None:
        """Store each chunk's encoded samples (offset -> JSON), all in one round trip; raises BrokerLost
        when the broker stays away (or refuses the write) past the retries."""
        pipe = self.client.pipeline(transaction=False)
        for offset, blob in chunks.items():
            pipe.set(samples_key(batch_id, offset), blob, ex=self.ttl)
        try:
            pipe.execute()
        except RedisError as e:
            url = masked(str(self.settings.broker_url))
            lost = isinstance(e, RedisConnectionError | RedisTimeoutError)  # a full Redis is not retried
            retried = f" (retried for {PUBLISH_RETRY_POLICY['max_retries']} s)" if lost else ""
            cause = " ".join(str(e).split())
            raise BrokerLost(f"cannot publish to the broker {url}{retried}: {cause}") from e

    def drop(self, keys: Sequence[str]) -> None:
        """Delete stored samples (once every reward of their chunk has answered)."""
        if keys:
            self.client.unlink(*keys)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
