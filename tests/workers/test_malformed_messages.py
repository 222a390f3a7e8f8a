"""Bytes that are no score task, pushed straight onto a queue's Redis list (LPUSH, as kombu does), against
a live worker: each is parked in the dead-letter queue (raw where nothing in it parses), the worker
stays up, and the next valid task is scored. Before issue 13 a body of ``{"x": 1}`` or one that is not
base64 stopped the worker, a list item that is not JSON stopped it and was lost, and an envelope of
``{"foo": 1}`` was dropped with no record."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from rewardq import RewardClient, Settings
from rewardq.wire.schema import queue_for
from rewardq.workers.runtime.dlq import DeadLetter
from tests.celery_messages import EMBED, task_body, task_headers
from tests.conftest import RedisServer, WorkerProcess
from tests.workers.test_cli import rewardq
from tests.workers.test_dlq import GOOD, dlq_entries

QUEUE = queue_for("format")


def score_payload(tag: str) -> dict[str, Any]:
    """A valid ``rewardq.score`` payload of one sample for the ``format`` reward."""
    return {
        "v": 1,
        "batch_id": f"batch-{tag}",
        "run_id": "malformed",
        "step": None,
        "reward": "format",
        "offset": 0,
        "samples": [{"completion": GOOD}],
    }


def envelope(body: Any, task_id: str | None = None) -> dict[str, Any]:
    """The kombu Redis envelope of a Celery protocol 2 ``rewardq.score`` message whose body is the JSON of
    ``body`` (base64, as kombu's Redis transport encodes it)."""
    task_id = task_id or str(uuid.uuid4())
    raw = json.dumps(body).encode()
    return {
        "body": base64.b64encode(raw).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": task_headers(task_id),
        "properties": {
            "correlation_id": task_id,
            "reply_to": str(uuid.uuid4()),
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def push(client: redis.Redis, item: bytes | dict[str, Any]) -> None:
    """LPUSH one item onto the queue's list (priority 0: the bare name), as kombu's ``_put`` does."""
    client.lpush(QUEUE, item if isinstance(item, bytes) else json.dumps(item).encode())


def not_base64() -> dict[str, Any]:
    item = envelope(task_body(score_payload("x")))
    item["body"] = "this is !!! not base64 ~~"
    return item


SHAPES: dict[str, Callable[[], bytes | dict[str, Any]]] = {
    'body {"x": 1}': lambda: envelope({"x": 1}),
    "body not base64": not_base64,
    "not JSON": lambda: b"this is not json",
    'envelope {"foo": 1}': lambda: {"foo": 1},
    "args not a list of one object": lambda: envelope([["a", "b"], {}, EMBED]),
}
REASONS = {
    'body {"x": 1}': "body is a dict, not [args, kwargs, embed]",
    "body not base64": "not a kombu message: Error: ",
    "not JSON": "not a kombu message: JSONDecodeError: ",
    'envelope {"foo": 1}': "not a kombu message: KeyError: 'properties'",
    "args not a list of one object": "args: not a list of one payload object",
}


@pytest.mark.slow
@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_malformed_item_is_parked_and_the_worker_scores_the_next_task(
    shape: str, redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--pool", "solo")
    client = redis.Redis.from_url(redis_server.url)
    push(client, SHAPES[shape]())
    with RewardClient(Settings.from_env({}, broker_url=redis_server.url, timeout=120)) as rq:
        result = rq.score([{"completion": GOOD}], "format", run_id="after-malformed")  # FIFO: after it
    assert result.statuses["format"] == ["ok"]
    assert worker.proc.poll() is None, worker.output()

    (entry,) = dlq_entries(redis_server.url)
    assert entry.reason.startswith(REASONS[shape]), entry.reason
    assert entry.queue == QUEUE and not entry.replayable
    refused = [line for line in worker.output().splitlines() if entry.task_id in line]
    assert len(refused) == 1, worker.output()  # one line, no traceback
    assert "Traceback" not in worker.output()
    assert client.llen(QUEUE) == 0 and client.hlen("unacked") == 0


@pytest.mark.slow
def test_raw_entries_are_listed_and_not_replayable(
    redis_server: RedisServer, sqlite_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(redis_server.url, sqlite_url, "--rewards", "format", "--pool", "solo")
    client = redis.Redis.from_url(redis_server.url)
    raw = "caf\xe9 \x00 not json".encode("latin-1")
    push(client, raw)
    with RewardClient(Settings.from_env({}, broker_url=redis_server.url, timeout=120)) as rq:
        rq.score([{"completion": GOOD}], "format", run_id="after-raw")

    (entry,) = dlq_entries(redis_server.url)
    assert entry.task_id.startswith("message-")
    assert entry.payload["raw_body"] == "caf\\xe9 \x00 not json" and entry.payload["raw_bytes"] == len(raw)
    cli_env = {"REWARDQ_BROKER_URL": redis_server.url}
    table = rewardq("dlq", "list", env=cli_env).stdout
    assert entry.task_id in table and "not a kombu message" in table
    replayed = rewardq("dlq", "replay", entry.task_id, env=cli_env, check=False)
    assert replayed.returncode == 2
    (line,) = replayed.stderr.strip().splitlines()
    assert line.startswith(f"error: {entry.task_id} is a message the workers could not take (not a kombu")
    assert line.endswith("not a score task: it cannot be replayed")


def test_a_raw_message_never_replaces_an_entry() -> None:
    from rewardq.workers.process.kv import MemoryKV
    from rewardq.workers.runtime.dlq import DeadLetters, raw_letter

    letters = DeadLetters(MemoryKV())
    first = letters.park_new(raw_letter(b"a", "first", QUEUE, headers={"id": "same"}))
    second = letters.park_new(raw_letter(b"b", "second", QUEUE, headers={"id": "same"}))
    assert first == "same" and second.startswith("same~")
    assert sorted(e.reason for e in letters.entries()) == ["first", "second"]
    assert isinstance(letters.get(second), DeadLetter)
