"""The dead-letter queue: tasks a worker will not score, kept in the broker's Redis for a person to see
(``rewardq dlq list``) and, once the cause is fixed, to send again (``rewardq dlq replay ID``).

Three things are parked here, each with its reason:

- a poison task: delivered more than ``max_deliveries`` times (its worker was lost each time); its
  samples are audited and answered ``error``; a replay scores them again as a new batch of the same run;
- a task whose envelope is malformed (wrong schema version, no batch …) or whose samples, stored in
  Redis, were gone (expired); its failure result stays;
- a message the worker cannot decode or does not know (pickled or undecodable content, an unknown task
  name, a body that is not a score task's arguments): its raw body, truncated to :data:`RAW_LIMIT`
  bytes and never unpickled;
- an item of a queue's Redis list that is not a kombu message at all (not JSON, a JSON envelope
  without its fields, a body its ``body_encoding`` cannot decode): the item's raw bytes, as above.

A raw message never replaces an entry: parked under an id already taken, it is kept under that id
with a suffix (``<id>~<8 hex>``), so that every message refused is there once.

The queue is one Redis hash, ``rewardq:dlq``: task id → a JSON :class:`DeadLetter`. Embedded (the
in-memory broker), it lives in the process and ends with it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from rewardq.wire.errors import RewardqError
from rewardq.wire.keys import DLQ_KEY
from rewardq.wire.schema import MAX_BATCH_ID, TASK_NAME
from rewardq.wire.settings import Settings
from rewardq.workers.process import metrics
from rewardq.workers.process.kv import KeyValue, broker_kv

RAW_LIMIT = 64 * 1024  # bytes of a raw body (and characters of its headers) kept
REASON_LIMIT = 500  # characters of a raw message's reason kept (an error may quote a huge value)
MAX_KEPT_ID = 200  # a longer task id in a raw message's headers is not used as its key


class UnknownDeadLetter(RewardqError):
    """Raised when a task id is not in the dead-letter queue."""


class NotReplayable(RewardqError):
    """Raised when a parked message is not a score task (undecodable, unknown), so it cannot be sent again."""


@dataclass(frozen=True)
class DeadLetter:
    """One parked task or message; ``payload`` is the task's payload, or for a raw message its content
    type, encoding, headers and (truncated) body."""

    task_id: str
    reward: str | None
    batch_id: str | None
    run_id: str | None
    reason: str
    deliveries: int
    parked_at: str
    queue: str | None
    payload: Any

    @property
    def replayable(self) -> bool:
        """True for a score task's payload with its samples (not a raw message the worker could not take,
        nor a task whose stored samples were gone)."""
        return isinstance(self.payload, dict) and isinstance(self.payload.get("samples"), list)


class DeadLetters:
    """The ``rewardq:dlq`` hash in the broker's key-value store (see ``broker_kv``)."""

    def __init__(self, client: KeyValue) -> None:
        self.client = client

    def park(self, entry: DeadLetter) -> None:
        self.client.hset(DLQ_KEY, entry.task_id, json.dumps(asdict(entry), default=str))
        metrics.parked(entry.reward)

    def park_new(self, entry: DeadLetter) -> str:
        """Park a raw message beside any entry of the same id; returns the id it is kept under."""
        task_id = entry.task_id
        while not self.client.hsetnx(DLQ_KEY, task_id, json.dumps(asdict(entry), default=str)):
            task_id = f"{entry.task_id}~{uuid.uuid4().hex[:8]}"
            entry = replace(entry, task_id=task_id)
        metrics.parked(entry.reward)
        return task_id

    def get(self, task_id: str) -> DeadLetter | None:
        raw = self.client.hget(DLQ_KEY, task_id)
        return None if raw is None else DeadLetter(**json.loads(raw))

    def entries(self) -> list[DeadLetter]:
        """Every parked entry, oldest first."""
        entries = [DeadLetter(**json.loads(raw)) for raw in self.client.hgetall(DLQ_KEY).values()]
        return sorted(entries, key=lambda e: (e.parked_at, e.task_id))

    def remove(self, task_id: str) -> bool:
        return bool(self.client.hdel(DLQ_KEY, task_id))


def task_letter(task_id: str, payload: Any, reason: str, deliveries: int, queue: str | None) -> DeadLetter:
    """The entry of a score task parked with ``reason``."""
    fields = payload if isinstance(payload, dict) else {}

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value if isinstance(value, str) else None

    return DeadLetter(
        task_id=task_id,
        reward=text("reward"),
        batch_id=text("batch_id"),
        run_id=text("run_id"),
        reason=reason,
        deliveries=deliveries,
        parked_at=_now(),
        queue=queue,
        payload=payload,
    )


def message_letter(message: Any, reason: str) -> DeadLetter:
    """The entry of a kombu message the worker could not take (see :func:`raw_letter`)."""
    headers = getattr(message, "headers", None)
    body = getattr(message, "body", b"")
    delivery = getattr(message, "delivery_info", None)
    queue = delivery.get("routing_key") if isinstance(delivery, dict) else None
    return raw_letter(
        body if isinstance(body, bytes) else str(body).encode("utf-8", "backslashreplace"),
        reason,
        queue if isinstance(queue, str) else None,
        headers=headers if isinstance(headers, dict) else {},
        content_type=getattr(message, "content_type", None),
        content_encoding=getattr(message, "content_encoding", None),
    )


def raw_letter(
    raw: bytes,
    reason: str,
    queue: str | None,
    *,
    headers: dict[str, Any] | None = None,
    content_type: Any = None,
    content_encoding: Any = None,
) -> DeadLetter:
    """The entry of raw bytes the worker could not take: kept as text (bytes that are not UTF-8
    escaped), at most RAW_LIMIT bytes of them, never decoded by their content type; keyed by the
    headers' task id when there is one."""
    plain = _plain(headers or {})
    task_id = plain.get("id") if isinstance(plain.get("id"), str) and plain.get("id") else None
    if task_id is not None and len(task_id) > MAX_KEPT_ID:
        task_id = None
    if len(shown := json.dumps(plain)) > RAW_LIMIT:
        plain = {"truncated": shown[:RAW_LIMIT]}
    return DeadLetter(
        task_id=task_id or f"message-{uuid.uuid4()}",
        reward=None,
        batch_id=None,
        run_id=None,
        reason=reason,
        deliveries=1,
        parked_at=_now(),
        queue=queue,
        payload={
            "content_type": _plain(content_type),
            "content_encoding": _plain(content_encoding),
            "headers": plain,
            "raw_body": raw[:RAW_LIMIT].decode("utf-8", "backslashreplace"),
            "raw_bytes": len(raw),
            "truncated": len(raw) > RAW_LIMIT,
        },
    )


@dataclass(frozen=True)
class Replayed:
    """A parked task sent again: its entry, and the new task and batch that score it."""

    entry: DeadLetter
    task_id: str
    batch_id: str


def replay(settings: Settings, task_id: str) -> Replayed:
    """Send a parked task's samples again to its queue, as a new batch of the same run and step, and
    remove it from the dead-letter queue.

    A new batch because the parked task's samples are already audited (as ``error``) under the original
    one, and the audit keeps the first row of a (batch, sample, reward): the replay's scores are stored
    beside them, as a rescoring is (``replay_batch_id``)."""
    from rewardq.broker import make_app

    letters = DeadLetters(broker_kv(settings))
    entry = letters.get(task_id)
    if entry is None:
        raise UnknownDeadLetter(f"no task {task_id!r} in the dead-letter queue (see `rewardq dlq list`)")
    if not entry.replayable or entry.queue is None or entry.batch_id is None:
        raw = isinstance(entry.payload, dict) and "raw_body" in entry.payload
        what = "is a message the workers could not take" if raw else "holds no samples"
        raise NotReplayable(f"{task_id} {what} ({entry.reason}), not a score task: it cannot be replayed")
    batch_id = replay_batch_id(entry.batch_id)
    new_task = str(uuid.uuid4())
    app = make_app(settings)
    try:
        app.send_task(
            TASK_NAME, args=[entry.payload | {"batch_id": batch_id}], task_id=new_task, queue=entry.queue
        )
    finally:
        app.close()
    letters.remove(task_id)
    return Replayed(entry, new_task, batch_id)


def replay_batch_id(batch_id: str) -> str:
    """``<batch>.replay-<8 hex>``, the original cut so that it fits the audit's batch id column."""
    suffix = f".replay-{uuid.uuid4().hex[:8]}"
    return batch_id[: MAX_BATCH_ID - len(suffix)] + suffix


def _plain(value: Any) -> Any:
    """Headers as JSON-able values (anything else as its repr)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
