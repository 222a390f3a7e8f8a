"""What ``RewardClient.submit`` puts on the queue is a ScoreTask of the wire schema, version included,
whose samples are stored once in Redis for every reward of their chunk."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest
import redis

from rewardq import RewardClient, Settings
from rewardq.samples import to_samples
from rewardq.stored_samples import INLINE_MAX_BYTES
from rewardq.wire.keys import SAMPLES_PREFIX, samples_key
from rewardq.wire.schema import SCHEMA_VERSION, ScoreTask, stored_reference
from rewardq.workers.runtime.admission import with_samples


@pytest.mark.slow
@pytest.mark.parametrize("padding", [0, INLINE_MAX_BYTES], ids=["small: inline", "large: stored"])
def test_the_queued_payload_is_a_score_task_with_the_schema_version(redis_server: Any, padding: int) -> None:
    settings = Settings.from_env({}, broker_url=redis_server.url, serve_wait=0)  # no worker: stays queued
    rows = [
        {"prompt": "q", "completion": "a", "solution": "1" + "0" * padding},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]},
    ]
    with RewardClient(settings) as client:
        handle = client.submit(rows, "format", run_id="r", step=3)
    broker = redis.Redis.from_url(redis_server.url)
    raw = broker.lpop("rewards.format")
    assert raw is not None
    message = json.loads(raw)
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    stored = broker.get(samples_key(handle.batch_id, 0))
    if padding:  # one reward, over INLINE_MAX_BYTES: stored, the task carries their count
        assert stored is not None and stored_reference(args[0]) == (samples_key(handle.batch_id, 0), 2)
        args[0] = with_samples(args[0], stored, 2)
    else:  # one reward, small: inline, nothing stored
        assert stored is None and stored_reference(args[0]) is None
    task = ScoreTask.model_validate(args[0])
    assert args[0]["v"] == SCHEMA_VERSION
    assert (task.batch_id, task.run_id, task.step, task.reward) == (handle.batch_id, "r", 3, "format")
    assert [s.completion for s in task.samples] == ["a", "b"]
    assert task.samples[0].columns == {"solution": "1" + "0" * padding}


@pytest.mark.slow
def test_a_chunks_samples_are_stored_once_for_every_reward_and_the_messages_carry_none(
    redis_server: Any,
) -> None:
    settings = Settings.from_env({}, broker_url=redis_server.url, serve_wait=0, chunk_size=3)
    rows = [{"prompt": "q" * 500, "completion": f"answer {i} " * 1000} for i in range(5)]
    with RewardClient(settings) as client:
        handle = client.submit(rows, ["format", "repetition"], run_id="r")
    broker = redis.Redis.from_url(redis_server.url)
    stored = {k.decode(): broker.get(k) for k in broker.scan_iter(f"{SAMPLES_PREFIX}*")}
    assert sorted(stored) == [samples_key(handle.batch_id, 0), samples_key(handle.batch_id, 3)]
    assert [len(orjson.loads(v)) for _, v in sorted(stored.items())] == [3, 2]
    assert 0 < broker.ttl(samples_key(handle.batch_id, 0)) <= settings.result_expires
    sample_bytes = sum(map(len, stored.values()))
    messages = [m for q in ("rewards.format", "rewards.repetition") for m in broker.lrange(q, 0, -1)]
    assert len(messages) == 4  # two chunks, two rewards
    assert sample_bytes > 45_000 and max(map(len, messages)) < 2_000  # references, not the samples


def test_a_payload_built_from_checked_samples_is_the_models_own_dump() -> None:
    rows = [
        {"prompt": "q", "completion": "a", "id": 7},
        {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "b"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "c", "x": 1}]},
    ]
    samples = to_samples(rows, max_record_bytes=1 << 20)
    payload = ScoreTask.payload(samples, batch_id="b", run_id="r", step=None, reward="format", offset=64)
    assert ScoreTask.model_validate(payload).model_dump(mode="json") == payload
    assert payload["v"] == SCHEMA_VERSION and payload["samples"] is samples  # not copied sample by sample
