"""What ``RewardClient.submit`` puts on the queue is a ScoreTask of the wire schema, version included."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis

from rewardq import RewardClient, Settings
from rewardq.samples import to_samples
from rewardq.wire.schema import SCHEMA_VERSION, ScoreTask


@pytest.mark.slow
def test_the_queued_payload_is_a_score_task_with_the_schema_version(redis_server: Any) -> None:
    settings = Settings.from_env({}, broker_url=redis_server.url, serve_wait=0)  # no worker: stays queued
    rows = [
        {"prompt": "q", "completion": "a", "solution": "1"},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]},
    ]
    with RewardClient(settings) as client:
        handle = client.submit(rows, "format", run_id="r", step=3)
    raw = redis.Redis.from_url(redis_server.url).lpop("rewards.format")
    assert raw is not None
    message = json.loads(raw)
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    task = ScoreTask.model_validate(args[0])
    assert args[0]["v"] == SCHEMA_VERSION
    assert (task.batch_id, task.run_id, task.step, task.reward) == (handle.batch_id, "r", 3, "format")
    assert [s.completion for s in task.samples] == ["a", "b"]
    assert task.samples[0].columns == {"solution": "1"}


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
