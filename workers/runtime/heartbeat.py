"""A worker's heartbeat: a thread in the worker's main process that, every REWARDQ_HEARTBEAT seconds,

- refreshes the score of each task the worker holds in kombu's ``unacked_index`` to now, so Redis never
  redelivers a task whose worker is alive, however long it runs, while a dead worker's tasks are
  restored by any live worker once REWARDQ_VISIBILITY_TIMEOUT has passed since its last beat
  (``unacked_restore_interval`` in rewardq.broker); ``ZADD XX`` never re-adds a tag already acked or
  restored;
- writes the worker's announcement ``rewardq:worker:<node>`` (rewardq.wire.announcement) with a time to
  live of three heartbeats, and lists the node in the ``rewardq:workers`` index; producers read them before
  enqueueing and ``rewardq status`` lists them.

Before the worker consumes, :meth:`Heartbeat.claim` writes the announcement marked ``starting`` and
refuses the start when another live worker serves one of its rewards with another scorer fingerprint.

It runs apart from the consumer's event loop because a solo pool runs its task on that loop's thread.
A failing beat (Redis down) is logged once per outage and retried at the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import signals

from rewardq.connection import masked
from rewardq.scorers import refuse_conflicts
from rewardq.serving import ANNOUNCEMENT_TTL_BEATS, read_announcements, redis_client
from rewardq.wire.announcement import Announcement
from rewardq.wire.errors import ScorerMismatchError
from rewardq.wire.keys import UNACKED_INDEX, WORKERS_INDEX, announcement_key
from rewardq.wire.settings import Settings
from rewardq.workers.process import metrics

log = logging.getLogger(__name__)

SOCKET_TIMEOUT_S = 5.0
# A node whose announcement expired this long ago (by this worker's clock) leaves the workers index; the
# margin keeps a live worker listed when clocks differ between machines.
INDEX_PRUNE_AFTER_S = 300.0


def held_tags(consumer: Any) -> list[str]:
    """The delivery tags the consumer's task channel holds and has not acked. Looked up at each beat:
    the channel is replaced when the consumer reconnects."""
    qos = getattr(getattr(getattr(consumer, "task_consumer", None), "channel", None), "qos", None)
    if qos is None:
        return []
    for _ in range(3):  # the event loop may change the mapping while it is copied
        try:
            acked = set(qos._dirty)
            return [tag for tag in list(qos._delivered) if tag not in acked]
        except RuntimeError:
            continue
    return []


def _index_key(consumer: Any) -> str:
    channel = getattr(getattr(consumer, "task_consumer", None), "channel", None)
    return str(getattr(channel, "unacked_index_key", UNACKED_INDEX))


class Heartbeat:
    """The heartbeat of one worker; ``install`` starts it when the worker is ready and stops it (deleting
    the announcement) at shutdown."""

    def __init__(self, settings: Settings, announcement: Announcement) -> None:
        self.settings = settings
        self.announcement = announcement
        self._consumer: Any = None
        self._client: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def install(self) -> None:
        """Start at Celery's ``worker_ready`` (its sender is the consumer), stop at ``worker_shutdown``."""

        def _ready(sender: Any = None, **_: object) -> None:
            self.start(sender)

        def _shutdown(**_: object) -> None:
            self.stop()

        signals.worker_ready.connect(_ready, weak=False)
        signals.worker_shutdown.connect(_shutdown, weak=False)

    def start(self, consumer: Any) -> None:
        if self._thread is not None:
            return
        self._consumer = consumer
        self._client = redis_client(
            self.settings, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        self._thread = threading.Thread(target=self._run, name="rewardq-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=2 * SOCKET_TIMEOUT_S)
        self._thread = None
        try:
            self._withdraw(self._client)
        except Exception as e:  # the announcement then expires by itself
            log.warning("could not withdraw the announcement of %s: %s", self.announcement.node, e)
        self._client.close()

    def claim(self) -> None:
        """Before consuming: write this worker's announcement marked ``starting``, then read the live
        ones and raise ScorerMismatchError (withdrawing it) when another worker serves one of this
        worker's rewards with another fingerprint. Written before it is read, so of two workers that
        start at once with different scorers, the one that reads last sees the other and refuses."""
        client = redis_client(
            self.settings, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
        )
        try:
            pipe = client.pipeline(transaction=False)
            self._announce(pipe, time.time(), held=0, starting=True)
            pipe.execute()
            try:
                refuse_conflicts(
                    read_announcements(client), self.announcement.node, self.announcement.fingerprints
                )
            except ScorerMismatchError:
                self._withdraw(client)
                raise
        finally:
            client.close()

    def beat(self) -> int:
        """One beat: refresh the held tasks' visibility and the announcement; returns how many are held."""
        tags = held_tags(self._consumer)
        now = time.time()
        pipe = self._client.pipeline(transaction=False)
        if tags:
            pipe.zadd(_index_key(self._consumer), dict.fromkeys(tags, now), xx=True)
        self._announce(pipe, now, held=len(tags))
        pipe.execute()
        metrics.tasks_held(len(tags))
        return len(tags)

    def _announce(self, pipe: Any, now: float, *, held: int, starting: bool = False) -> None:
        """Queue on ``pipe`` the writes of the announcement and its place in the workers index."""
        entry = self.announcement.model_copy(update={"beat_at": now, "held": held, "starting": starting})
        ttl = ANNOUNCEMENT_TTL_BEATS * self.settings.heartbeat
        pipe.set(announcement_key(self.announcement.node), entry.to_json(), px=int(ttl * 1000))
        pipe.zadd(WORKERS_INDEX, {self.announcement.node: now + ttl})
        pipe.zremrangebyscore(WORKERS_INDEX, "-inf", now - INDEX_PRUNE_AFTER_S)

    def _withdraw(self, client: Any) -> None:
        pipe = client.pipeline(transaction=False)
        pipe.delete(announcement_key(self.announcement.node))
        pipe.zrem(WORKERS_INDEX, self.announcement.node)
        pipe.execute()

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as e:
                if not self._failing:
                    log.warning(
                        "heartbeat of %s to %s failed (%s); retrying every %gs",
                        self.announcement.node,
                        masked(self.settings.broker_url),
                        e,
                        self.settings.heartbeat,
                    )
                    self._failing = True
            else:
                if self._failing:
                    log.info("heartbeat of %s restored", self.announcement.node)
                    self._failing = False
            if self._stop.wait(self.settings.heartbeat):
                return
