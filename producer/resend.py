"""Re-sending chunks a broker restart lost.

A Redis restart can lose a task in flight: a message taken off its queue whose ``unacked`` entry was
never written, or never made it to disk. Nothing would ever answer it, and the client would wait out its
whole timeout. So a gathering handle asks, for every chunk pending longer than ``resend_after`` seconds
since it was sent or last looked for, whether anything still holds it, with one Lua script for all of
them: a message with its task id in one of its queue's lists (kombu keeps one list per priority step),
an entry in kombu's ``unacked`` hash (a worker holds it), or its result key (it is done). A chunk held
nowhere, twice in a row a moment apart (a worker takes a message off its list before it writes the
``unacked`` entry), is sent again with the same task id: workers score it idempotently (the audit keeps
one row per sample and reward, and the task answers the audited values).

Only the handle that submitted a batch keeps the chunks' payloads; one re-opened by batch id in another
process cannot re-send them. A chunk whose samples are stored in Redis (:mod:`rewardq.stored_samples`)
is re-sent with its samples stored again first: a restart that lost the task lost them too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from rewardq.broker import results_on_broker
from rewardq.stored_samples import SampleStore
from rewardq.wire.keys import UNACKED_KEY, priority_lists
from rewardq.wire.schema import SENT_AT_HEADER, TASK_NAME, sample_count

log = logging.getLogger(__name__)

# Lists or an unacked hash longer than this are not scanned: they count as holding every chunk.
SCAN_CAP = 20_000
# A chunk found missing is looked for once more after this pause before it is re-sent.
CONFIRM_PAUSE_S = 0.5

# KEYS: the unacked hash, then the lists to scan, then the result keys to test (one per chunk, or
# none when results live on another Redis). ARGV: the scan cap, the number of lists, then the task ids.
# Returns, per task id, 1 when something holds it and 0 when nothing does.
HELD_SCRIPT = """
local cap = tonumber(ARGV[1])
local nlists = tonumber(ARGV[2])
local ids = {}
local held = {}
local all_held = false
for i = 3, #ARGV do
  ids[ARGV[i]] = i - 2
  held[i - 2] = 0
end
local function mark(text)
  local id = string.match(text, '"id": "([^"]+)"')
  if id and ids[id] then held[ids[id]] = 1 end
end
if redis.call('HLEN', KEYS[1]) > cap then
  all_held = true
else
  for _, entry in ipairs(redis.call('HVALS', KEYS[1])) do mark(entry) end
end
for k = 2, nlists + 1 do
  if redis.call('LLEN', KEYS[k]) > cap then
    all_held = true
  elseif not all_held then
    for _, message in ipairs(redis.call('LRANGE', KEYS[k], 0, -1)) do mark(message) end
  end
end
for k = nlists + 2, #KEYS do
  if redis.call('EXISTS', KEYS[k]) == 1 then held[k - nlists - 1] = 1 end
end
if all_held then
  for i = 1, #held do held[i] = 1 end
end
return held
"""


@dataclass(frozen=True)
class Sendable:
    """What sending a chunk's task again needs: its payload, queue and priority, and its samples as
    stored in Redis when the payload references them."""

    payload: dict[str, Any]
    queue: str
    priority: int | None
    stored: bytes | None = None


class Resender:
    """Looks for a batch's overdue chunks in the broker and sends the lost ones again."""

    def __init__(
        self, app: Celery, after: float, sendables: Mapping[str, Sendable], store: SampleStore | None = None
    ) -> None:
        self.app = app
        self.store = store
        self.after = after
        self.sendables = dict(sendables)
        now = time.monotonic()
        self.checked = dict.fromkeys(self.sendables, now)

    def due_in(self, pending: Mapping[str, Any]) -> float | None:
        """Seconds until the next pending chunk is overdue (0.0 when one is), or None when none can be."""
        times = [self.checked[task_id] for task_id in pending if task_id in self.checked]
        if not times:
            return None
        return max(0.0, min(times) + self.after - time.monotonic())

    def check(self, pending: Mapping[str, Any]) -> list[str]:
        """Look for the overdue chunks among ``pending`` and re-send those nothing holds; their ids."""
        now = time.monotonic()
        overdue = [t for t in pending if t in self.checked and self.checked[t] + self.after <= now]
        if not overdue:
            return []
        try:
            missing = self._missing(overdue)
            if missing:
                time.sleep(CONFIRM_PAUSE_S)
                missing = self._missing(missing)
            for task_id in missing:
                self._send(task_id)
        except (OperationalError, RedisError, OSError) as e:  # the broker is down: look again later
            log.warning("could not look for %d overdue tasks in the broker: %s", len(overdue), e)
            missing = []
        now = time.monotonic()
        for task_id in overdue:
            self.checked[task_id] = now
        return missing

    def _missing(self, task_ids: list[str]) -> list[str]:
        """The task ids that no queue list, ``unacked`` entry or result key holds."""
        backend: Any = self.app.backend
        lists = list(dict.fromkeys(k for t in task_ids for k in priority_lists(self.sendables[t].queue)))
        same_redis = results_on_broker(self.app)
        result_keys = [_text(backend.get_key_for_task(t)) for t in task_ids] if same_redis else []
        with self.app.connection_for_write() as conn:
            client = conn.default_channel.client
            held = client.eval(
                HELD_SCRIPT,
                1 + len(lists) + len(result_keys),
                UNACKED_KEY,
                *lists,
                *result_keys,
                SCAN_CAP,
                len(lists),
                *task_ids,
            )
        missing = [t for t, h in zip(task_ids, held, strict=True) if not h]
        if missing and not same_redis:
            missing = [t for t in missing if not backend.client.exists(backend.get_key_for_task(t))]
        return missing

    def _send(self, task_id: str) -> None:
        chunk = self.sendables[task_id]
        payload = chunk.payload
        log.warning(
            "batch %s: task %s (reward %s, samples from %d) is in no queue, held by no worker and has no "
            "result (lost in a broker restart?); sending it again",
            payload["batch_id"],
            task_id,
            payload["reward"],
            payload["offset"],
        )
        if chunk.stored is not None and self.store is not None:
            self.store.put(payload["batch_id"], {payload["offset"]: chunk.stored})
        self.app.send_task(
            TASK_NAME,
            args=[payload],
            task_id=task_id,
            queue=chunk.queue,
            argsrepr=summary(payload),
            kwargsrepr="{}",
            priority=chunk.priority,
            headers={SENT_AT_HEADER: time.time()},
        )


def _text(key: str | bytes) -> str:
    return key.decode() if isinstance(key, bytes) else key


def summary(payload: Mapping[str, Any]) -> str:
    """A short argsrepr: Celery would otherwise build a truncated repr of the whole chunk (about 0.4 ms
    per 64 samples) for logs and monitors."""
    first = payload["offset"]
    last = first + sample_count(payload) - 1
    return f"batch={payload['batch_id']} reward={payload['reward']} samples={first}..{last}"
