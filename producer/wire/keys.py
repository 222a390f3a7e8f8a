"""The Redis keys producers and workers share, named once.

Running fleets read and write these keys, so the strings never change: a renamed key would be a new,
empty one to every process of another version. A reward's queue is named by
:func:`rewardq.wire.schema.queue_for`.

- ``rewardq:worker:<node>``: a worker's announcement (:class:`rewardq.wire.announcement.Announcement`);
- ``rewardq:workers``: sorted set, node -> when its announcement expires;
- ``rewardq:run:<run_id>:scorers``: hash, the scorer fingerprints a run is pinned to;
- ``rewardq:dlq``: hash, task id -> a parked task (the dead-letter queue);
- ``rewardq:deliveries:<task id>``: how many times a task was delivered;
- ``rewardq:cache:<key>``: the result cache rewards share (a judge's verdicts);
- ``rewardq:samples:<batch id>:<offset>``: one chunk's samples, stored once as JSON for the tasks of every
  reward of that chunk (:func:`samples_key`);
- kombu's own: a queue's list per priority step, ``unacked`` and ``unacked_index`` (below).
"""

from __future__ import annotations

ANNOUNCEMENT_PREFIX = "rewardq:worker:"
WORKERS_INDEX = "rewardq:workers"
DLQ_KEY = "rewardq:dlq"
DELIVERIES_PREFIX = "rewardq:deliveries:"
CACHE_PREFIX = "rewardq:cache:"
SAMPLES_PREFIX = "rewardq:samples:"

# Message priorities on Redis (kombu: 0 is served first). Trainers send at the default, 0; offline
# rescoring sends RESCORE_PRIORITY. kombu keeps one Redis list per step and a worker's BRPOP names every
# queue's step-0 list before any step-9 list, so a waiting training task is always taken before a
# waiting rescoring task (docs/rescoring.md). Both ends must share the steps: a producer that sent a
# priority whose list the workers do not poll would strand its tasks. Two steps instead of kombu's four
# halve the lists polled.
TRAINING_PRIORITY = 0
RESCORE_PRIORITY = 9
PRIORITY_STEPS = [TRAINING_PRIORITY, RESCORE_PRIORITY]

# kombu's Redis transport keeps a queue's messages of priority step p > 0 in the list named queue +
# PRIORITY_SEP + p (step 0 in the bare name), the messages workers hold in the hash UNACKED_KEY, and
# when each was taken (refreshed by the heartbeat) in the sorted set UNACKED_INDEX.
PRIORITY_SEP = "\x06\x16"
UNACKED_KEY = "unacked"
UNACKED_INDEX = "unacked_index"


def announcement_key(node: str) -> str:
    """The Redis key of one worker's announcement."""
    return ANNOUNCEMENT_PREFIX + node


def run_scorers_key(run_id: str) -> str:
    """The Redis hash holding a run's pinned fingerprints, reward -> fingerprint."""
    return f"rewardq:run:{run_id}:scorers"


def deliveries_key(task_id: str) -> str:
    """The Redis counter of a task's deliveries."""
    return DELIVERIES_PREFIX + task_id


def samples_key(batch_id: str, offset: int) -> str:
    """The Redis key holding the samples of a batch's chunk from ``offset``."""
    return f"{SAMPLES_PREFIX}{batch_id}:{offset}"


def priority_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps for ``queue``: one per priority step."""
    return [queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS]
